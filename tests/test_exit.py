"""Process exit, in real subprocesses: queued records are delivered or spooled, exit never
hangs, and flush/shutdown are safe in signal handlers and atexit hooks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from heliconetrace._spool import count_records
from tests.conftest import TEST_KEY
from tests.helicone_schema import assert_valid_record
from tests.receiver import HeliconeReceiver

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import heliconetrace
from heliconetrace import helicone_span

heliconetrace.configure(
    api_key={key!r},
    log_url={url!r},
    shutdown_timeout={shutdown_timeout},
    request_timeout=120,
)
with helicone_span(user="short-lived", model="gpt-4o-mini") as span:
    span.set_response({{"ok": True}})
print("handler done", flush=True)
"""


def run_script(receiver: HeliconeReceiver, shutdown_timeout: float) -> tuple[float, str]:
    script = SCRIPT.format(
        key=TEST_KEY, url=f"{receiver.url}/oai/v1/log", shutdown_timeout=shutdown_timeout
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("HELICONETRACE_RAISE_INTERNAL_ERRORS", None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=100,
        env=environment,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "handler done" in result.stdout
    return elapsed, result.stdout + result.stderr


def test_short_script_delivers_before_exit(receiver: HeliconeReceiver) -> None:
    """A script that logs one record and exits at once still delivers it."""
    run_script(receiver, shutdown_timeout=5.0)
    records = receiver.wait_for(1, timeout=5)
    assert len(records) == 1
    assert_valid_record(records[0])
    assert records[0]["providerRequest"]["meta"]["Helicone-User-Id"] == "short-lived"


def test_hanging_helicone_does_not_hang_exit(receiver: HeliconeReceiver) -> None:
    """With Helicone never answering, exit waits about shutdown_timeout, not request_timeout."""
    receiver.mode = "hang"
    elapsed, output = run_script(receiver, shutdown_timeout=1.0)
    # Without the deadline the exit would wait for the 120 s request timeout.
    assert elapsed < 30, output
    assert "heliconetrace exporter stopped" in output
    assert "finished_in_time=False" in output
    assert receiver.records == []


SPOOL_SCRIPT = """
import heliconetrace
from heliconetrace import helicone_span

heliconetrace.configure(
    api_key={key!r},
    log_url={url!r},
    shutdown_timeout={shutdown_timeout},
    request_timeout=120,
    retry_max_backoff=0.05,
    spool_dir={spool!r},
)
for index in range({count}):
    with helicone_span(user="{prefix}-" + str(index)) as span:
        span.set_response({{"ok": True}})
print("handler done", flush=True)
"""


def run_spool_script(
    url: str, spool: Path, count: int, prefix: str, shutdown_timeout: float = 1.0
) -> tuple[float, str]:
    script = SPOOL_SCRIPT.format(
        key=TEST_KEY,
        url=f"{url}/oai/v1/log",
        shutdown_timeout=shutdown_timeout,
        spool=str(spool),
        count=count,
        prefix=prefix,
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("HELICONETRACE_RAISE_INTERNAL_ERRORS", None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=100,
        env=environment,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    return elapsed, result.stdout + result.stderr


def stopped_line(output: str) -> str:
    (line,) = [line for line in output.splitlines() if "heliconetrace exporter stopped" in line]
    return line


def counted(line: str, name: str) -> int:
    match = re.search(rf"\b{name}=(\d+)", line)
    assert match is not None, line
    return int(match.group(1))


class TestExitWithSpool:
    def test_down_spools_then_next_start_delivers(
        self, receiver: HeliconeReceiver, tmp_path: Path
    ) -> None:
        """With Helicone down, exit spools the records within its deadline; the next run
        delivers all of them and its own."""
        spool = tmp_path / "spool"
        elapsed, output = run_spool_script("http://127.0.0.1:9", spool, 20, "first")
        # A hang would take the 120 s request timeout.
        assert elapsed < 30, output
        line = stopped_line(output)
        assert counted(line, "spooled") == 20
        assert counted(line, "dropped") == 0
        assert count_records(spool) == 20

        _, output = run_spool_script(receiver.url, spool, 1, "second", shutdown_timeout=10.0)
        records = receiver.wait_for(21, timeout=10)
        users = sorted(record["providerRequest"]["meta"]["Helicone-User-Id"] for record in records)
        assert users == sorted(["second-0", *(f"first-{index}" for index in range(20))])
        assert count_records(spool) == 0
        time.sleep(0.3)
        assert len(receiver.records) == 21

    def test_hanging_spools_within_deadline(
        self, receiver: HeliconeReceiver, tmp_path: Path
    ) -> None:
        """With Helicone never responding, exit spools what is queued and in flight by the
        deadline; a later run delivers each record once."""
        spool = tmp_path / "spool"
        receiver.mode = "hang"
        elapsed, output = run_spool_script(receiver.url, spool, 10, "hung")
        assert elapsed < 30, output
        line = stopped_line(output)
        assert counted(line, "spooled") == 10
        assert counted(line, "dropped") == 0
        assert "finished_in_time=True" in line
        assert receiver.records == []

        receiver.mode = "ok"
        run_spool_script(receiver.url, spool, 1, "next", shutdown_timeout=10.0)
        records = receiver.wait_for(11, timeout=10)
        request_ids = {
            record["providerRequest"]["meta"]["Helicone-Request-Id"] for record in records
        }
        assert len(request_ids) == 11
        assert count_records(spool) == 0
        time.sleep(0.3)
        assert len(receiver.records) == 11

    def test_down_without_spool_drops(self, tmp_path: Path) -> None:
        """Without a spool, exit with Helicone down drops the records, counts them in one line,
        and does not wait for retries."""
        script = SCRIPT.format(
            key=TEST_KEY, url="http://127.0.0.1:9/oai/v1/log", shutdown_timeout=1.0
        )
        environment = {**os.environ, "PYTHONPATH": str(ROOT)}
        environment.pop("HELICONETRACE_RAISE_INTERNAL_ERRORS", None)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=100,
            env=environment,
        )
        assert time.monotonic() - started < 30
        line = stopped_line(result.stdout + result.stderr)
        assert counted(line, "dropped") == 1
        assert counted(line, "delivered") == 0
        assert "shutdown_deadline" in line


SIGNAL_SCRIPT = """
import os
import signal
import heliconetrace
from heliconetrace import helicone_span
from heliconetrace._lifecycle import get_exporter

heliconetrace.configure(api_key={key!r}, log_url={url!r})
with helicone_span(user="before-signal"):
    pass
assert heliconetrace.flush(10)
results = []

def handler(signum, frame):
    results.append(heliconetrace.flush(2.0))
    results.append(heliconetrace.stats().delivered)
    results.append(heliconetrace.shutdown(2.0))

signal.signal(signal.SIGUSR1, handler)
exporter = get_exporter()
# Hold the locks that flush, stats and shutdown take, as code interrupted inside them would.
with exporter._tracker._condition, exporter._counters._lock, exporter._queues.wake, exporter._lock:
    os.kill(os.getpid(), signal.SIGUSR1)
    for _ in range(1000):
        if results:
            break
print("results", results, flush=True)
"""


ATEXIT_SCRIPT = """
import atexit
import heliconetrace
from heliconetrace import helicone_span

heliconetrace.configure(api_key={key!r}, log_url={url!r})

def flush_at_exit():
    print("flushed", heliconetrace.flush(5.0), flush=True)

atexit.register(flush_at_exit)
with helicone_span(user="atexit"):
    pass
"""


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("HELICONETRACE_RAISE_INTERNAL_ERRORS", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )


class TestHooks:
    def test_signal_handler_with_locks_held(self, receiver: HeliconeReceiver) -> None:
        """flush(), stats() and shutdown() in a signal handler return although the interrupted
        code holds their locks."""
        result = run_python(SIGNAL_SCRIPT.format(key=TEST_KEY, url=f"{receiver.url}/oai/v1/log"))
        assert result.returncode == 0, result.stderr
        assert "results [True, 1, True]" in result.stdout
        assert len(receiver.records) == 1

    def test_flush_in_atexit_hook(self, receiver: HeliconeReceiver) -> None:
        """flush() in an application's atexit hook delivers the queued record."""
        result = run_python(ATEXIT_SCRIPT.format(key=TEST_KEY, url=f"{receiver.url}/oai/v1/log"))
        assert result.returncode == 0, result.stderr
        assert "flushed True" in result.stdout
        assert len(receiver.wait_for(1)) == 1
