"""Process exit, in real subprocesses: queued records are delivered, and exit never hangs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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


def test_forked_child_delivers_its_own_record(receiver: HeliconeReceiver) -> None:
    """After os.fork() the child starts its own exporter and delivers its record."""
    script = textwrap.dedent(
        f"""
        import os
        import heliconetrace
        from heliconetrace import helicone_span

        heliconetrace.configure(api_key={TEST_KEY!r}, log_url={receiver.url + "/oai/v1/log"!r})
        with helicone_span(user="parent-before-fork"):
            pass
        heliconetrace.flush(10)
        pid = os.fork()
        if pid == 0:
            with helicone_span(user="child"):
                pass
            ok = heliconetrace.flush(10)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        with helicone_span(user="parent-after-fork"):
            pass
        assert heliconetrace.flush(10)
        raise SystemExit(os.waitstatus_to_exitcode(status))
        """
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=environment
    )
    assert result.returncode == 0, result.stderr
    records = receiver.wait_for(3, timeout=10)
    users = sorted(record["providerRequest"]["meta"]["Helicone-User-Id"] for record in records)
    assert users == ["child", "parent-after-fork", "parent-before-fork"]
