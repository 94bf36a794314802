"""`kill -9` while a process spools, then a replay: every record that reached the disk before the
kill is delivered once, and the replay reads past a frame cut short by the kill."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from heliconetrace._spool import (
    FILE_HEADER,
    count_records,
    encode_frame,
    read_frames,
    segment_paths,
)
from tests.conftest import TEST_KEY
from tests.receiver import HeliconeReceiver

ROOT = Path(__file__).resolve().parent.parent

# Logs records as fast as it can with Helicone down. Workers spool what fails, and the spool
# writer spools what finds the queue full. Every 50 records it prints the spooled count.
SPOOLING_SCRIPT = """
import sys
import heliconetrace
from heliconetrace import helicone_span

heliconetrace.configure(
    api_key={key!r},
    log_url="http://127.0.0.1:9/oai/v1/log",
    spool_dir={spool!r},
    queue_size=20,
    workers=2,
    retry_max_attempts=1,
    retry_max_backoff=0.01,
)
index = 0
while True:
    with helicone_span(user="crash-" + str(index)) as span:
        span.set_response({{"text": "x" * 2000}})
    index += 1
    if index % 50 == 0:
        sys.stdout.write("spooled %d\\n" % heliconetrace.stats().spooled)
        sys.stdout.flush()
"""


def spool_until_killed(spool: Path, minimum: int) -> int:
    """Run the spooling script until it reports `minimum` spooled records, kill it with
    SIGKILL, and return the last count it reported."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("HELICONETRACE_RAISE_INTERNAL_ERRORS", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(SPOOLING_SCRIPT.format(key=TEST_KEY, spool=str(spool))),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environment,
    )
    assert process.stdout is not None

    reported = 0
    deadline = time.monotonic() + 60
    try:
        while reported < minimum and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            match = re.fullmatch(r"spooled (\d+)\n", line)
            if match:
                reported = int(match.group(1))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    assert process.returncode == -signal.SIGKILL
    assert reported >= minimum
    return reported


def replay(spool: Path, url: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HELICONE_API_KEY": TEST_KEY,
        "HELICONETRACE_LOG_URL": f"{url}/oai/v1/log",
    }
    environment.pop("HELICONETRACE_RAISE_INTERNAL_ERRORS", None)
    return subprocess.run(
        [sys.executable, "-m", "heliconetrace", "replay", str(spool), "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=100,
        env=environment,
    )


class TestKilledWhileSpooling:
    def test_nothing_spooled_is_lost(self, receiver: HeliconeReceiver, tmp_path: Path) -> None:
        """Two processes killed in the middle of spooling lose none of the records they had
        reported spooled, and a replay delivers each record on disk exactly once."""
        spool = tmp_path / "spool"
        reported = spool_until_killed(spool, 150)
        reported += spool_until_killed(spool, 150)
        on_disk = count_records(spool)
        assert on_disk >= reported

        result = replay(spool, receiver.url)
        assert result.returncode == 0, result.stdout + result.stderr
        records = receiver.wait_for(on_disk, timeout=30)
        request_ids = {
            record["providerRequest"]["meta"]["Helicone-Request-Id"] for record in records
        }
        assert len(request_ids) == on_disk
        assert count_records(spool) == 0
        time.sleep(0.3)
        assert len(receiver.records) == on_disk

    def test_torn_tail_skipped_by_replay(self, receiver: HeliconeReceiver, tmp_path: Path) -> None:
        """A frame cut short at the end of a segment, as a kill during write(2) leaves it, is
        ignored, and the records before it are delivered."""
        spool = tmp_path / "spool"
        spool_until_killed(spool, 100)
        on_disk = count_records(spool)
        last = segment_paths(spool)[-1]
        data = last.read_bytes()
        *_, (_, payload) = read_frames(data, len(FILE_HEADER))
        with last.open("ab") as file:
            file.write(encode_frame(payload)[: len(payload) // 2])
        assert count_records(spool) == on_disk

        result = replay(spool, receiver.url)
        assert result.returncode == 0, result.stdout + result.stderr
        receiver.wait_for(on_disk, timeout=30)
        time.sleep(0.3)
        assert len(receiver.records) == on_disk
        assert count_records(spool) == 0
