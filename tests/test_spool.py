"""The durable spool: its file format, its bounds, and delivery through it with a receiver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import heliconetrace
from heliconetrace import helicone_span
from heliconetrace._config import resolve
from heliconetrace._exporter import OUTAGE_QUEUE_SIZE
from heliconetrace._lifecycle import EXPORTERS
from heliconetrace._spool import (
    FILE_HEADER,
    SEGMENT_MAX_BYTES,
    SpooledRecord,
    SpoolWriter,
    claim_segments,
    count_records,
    encode_frame,
    read_frames,
    segment_paths,
    try_claim,
)
from tests.conftest import TEST_KEY
from tests.helicone_schema import assert_valid_record
from tests.receiver import HeliconeReceiver

ROOT = Path(__file__).resolve().parent.parent


def record(index: int, size: int = 100) -> SpooledRecord:
    body = json.dumps({"index": index, "padding": "p" * size}).encode()
    return SpooledRecord(body, "http://127.0.0.1:9/oai/v1/log", "worker", "openai", f"id-{index}")


def indexes(directory: Path) -> list[int]:
    """Return the index of each record in the directory's segments, in file order."""
    found = []
    for path in segment_paths(directory):
        data = path.read_bytes()
        for _, payload in read_frames(data, len(FILE_HEADER)):
            decoded = SpooledRecord.from_payload(payload)
            assert decoded is not None
            found.append(json.loads(decoded.body)["index"])
    return found


def send_to(receiver: HeliconeReceiver, spool: Path, **settings: Any) -> None:
    options: dict[str, Any] = {
        "retry_max_backoff": 0.05,
        "retry_max_attempts": 2,
        "shutdown_timeout": 2.0,
        "spool_dir": spool,
    }
    options.update(settings)
    heliconetrace.configure(api_key=TEST_KEY, log_url=f"{receiver.url}/oai/v1/log", **options)


def log_records(count: int, prefix: str = "user") -> None:
    for index in range(count):
        with helicone_span(user=f"{prefix}-{index}") as span:
            span.set_response({"ok": True})


def users(receiver: HeliconeReceiver) -> list[str]:
    return sorted(
        record["providerRequest"]["meta"]["Helicone-User-Id"] for record in receiver.records
    )


def current_stats() -> heliconetrace.ExporterStats:
    exporter = EXPORTERS.peek()
    assert exporter is not None
    return exporter.stats()


class TestFormat:
    def test_round_trip(self) -> None:
        """Frames read back in order with their payloads intact."""
        payloads = [b"alpha", b"", b"\x00" * 300]
        data = b"".join(encode_frame(payload) for payload in payloads)
        assert [payload for _, payload in read_frames(data, 0)] == payloads

    def test_torn_tail_ignored(self) -> None:
        """A last frame cut at any byte leaves the frames before it readable, and only them."""
        first = encode_frame(b"first record")
        second = encode_frame(b"second record")
        for cut in range(len(second)):
            data = first + second[:cut]
            assert [payload for _, payload in read_frames(data, 0)] == [b"first record"]

    def test_damaged_frame_skipped(self) -> None:
        """A frame with a flipped byte is skipped and the frames after it are still read."""
        frames = [encode_frame(f"record {index}".encode()) for index in range(3)]
        damaged = bytearray(frames[1])
        damaged[-1] ^= 0xFF
        data = frames[0] + bytes(damaged) + frames[2]
        assert [payload for _, payload in read_frames(data, 0)] == [b"record 0", b"record 2"]

    def test_payload_keeps_destination(self) -> None:
        """A spooled record keeps its body, URL, server kind, provider and request id."""
        original = record(1)
        assert SpooledRecord.from_payload(original.to_payload()) == original

    def test_foreign_payload_rejected(self) -> None:
        """A payload this version did not write decodes to None."""
        assert SpooledRecord.from_payload(b'{"v": 99}\n{}') is None


class TestWriter:
    def test_segment_per_process(self, tmp_path: Path) -> None:
        """Records go to one segment named with this process's id, oldest first."""
        writer = SpoolWriter(tmp_path, 10**9)
        for index in range(5):
            assert writer.append(record(index)) is None
        writer.seal()
        (path,) = segment_paths(tmp_path)
        assert f"-{os.getpid()}-" in path.name
        assert indexes(tmp_path) == [0, 1, 2, 3, 4]

    def test_rotates_past_segment_size(self, tmp_path: Path) -> None:
        """A new segment starts once one passes SEGMENT_MAX_BYTES."""
        writer = SpoolWriter(tmp_path, 10**9)
        size = 100_000
        count = SEGMENT_MAX_BYTES // size + 5
        for index in range(count):
            assert writer.append(record(index, size)) is None
        writer.seal()
        assert len(segment_paths(tmp_path)) == 2
        assert indexes(tmp_path) == list(range(count))

    def test_full_spool_drops_newest(self, tmp_path: Path) -> None:
        """Past max_bytes a record is refused with reason spool_full; earlier ones stay."""
        writer = SpoolWriter(tmp_path, 4096)
        results = [writer.append(record(index, 500)) for index in range(20)]
        writer.seal()
        kept = results.index("spool_full")
        assert kept > 0
        assert set(results[kept:]) == {"spool_full"}
        assert indexes(tmp_path) == list(range(kept))
        total = sum(path.stat().st_size for path in tmp_path.iterdir())
        assert total <= 4096

    def test_active_segment_not_claimable(self, tmp_path: Path) -> None:
        """A segment being written cannot be claimed for replay; once sealed it can."""
        writer = SpoolWriter(tmp_path, 10**9)
        writer.append(record(0))
        (path,) = segment_paths(tmp_path)
        assert try_claim(path) is None
        writer.seal()
        claim = try_claim(path)
        assert claim is not None
        claim.release()

    def test_claim_exclusive(self, tmp_path: Path) -> None:
        """Two claims of one segment cannot coexist, even in one process."""
        writer = SpoolWriter(tmp_path, 10**9)
        writer.append(record(0))
        writer.seal()
        (path,) = segment_paths(tmp_path)
        first = try_claim(path)
        assert first is not None
        assert try_claim(path) is None
        first.release()

    def test_progress_resumes(self, tmp_path: Path) -> None:
        """A replay cut short resumes after the last settled record."""
        writer = SpoolWriter(tmp_path, 10**9)
        for index in range(4):
            writer.append(record(index))
        writer.seal()
        (claim,) = list(claim_segments(tmp_path))
        for settled, (offset, _) in enumerate(claim.records()):
            claim.settle(offset)
            if settled == 1:
                break
        claim.release()
        assert count_records(tmp_path) == 2
        (claim,) = list(claim_segments(tmp_path))
        remaining = [
            json.loads(item.body)["index"] for _, item in claim.records() if item is not None
        ]
        claim.finish()
        assert remaining == [2, 3]
        assert list(tmp_path.iterdir()) == []


class TestSpooledDelivery:
    def test_exhausted_retries_spooled_then_replayed(
        self, receiver: HeliconeReceiver, tmp_path: Path
    ) -> None:
        """Records that fail every attempt are spooled; the next exporter delivers them with
        their request ids, and the spool empties."""
        spool = tmp_path / "spool"
        send_to(receiver, spool)
        receiver.mode = "500"
        log_records(4)
        assert heliconetrace.flush(10.0)
        stats = current_stats()
        assert stats.spooled == 4
        assert stats.dropped == 0
        assert count_records(spool) == 4
        spooled_ids = sorted(
            request.json()["providerRequest"]["meta"]["Helicone-Request-Id"]
            for request in receiver.requests
        )

        receiver.mode = "ok"
        send_to(receiver, spool)
        log_records(1, prefix="trigger")
        assert heliconetrace.flush(10.0)
        records = receiver.wait_for(5)
        delivered_ids = sorted(
            record["providerRequest"]["meta"]["Helicone-Request-Id"] for record in records
        )
        assert set(spooled_ids) <= set(delivered_ids)
        assert users(receiver) == ["trigger-0", "user-0", "user-1", "user-2", "user-3"]
        deadline = time.monotonic() + 5.0
        while count_records(spool) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert current_stats().replayed == 4
        assert count_records(spool) == 0

    def test_recovery_replays_in_process(self, receiver: HeliconeReceiver, tmp_path: Path) -> None:
        """A long-running process delivers what it spooled once Helicone responds again."""
        spool = tmp_path / "spool"
        send_to(receiver, spool)
        port = int(receiver.url.rsplit(":", 1)[1])
        receiver.stop()
        log_records(3)
        assert heliconetrace.flush(10.0)
        assert current_stats().spooled == 3
        receiver.start(port)
        log_records(1, prefix="after")
        assert heliconetrace.flush(10.0)
        receiver.wait_for(4)
        assert users(receiver) == ["after-0", "user-0", "user-1", "user-2"]
        assert len(receiver.records) == 4

    def test_full_queue_goes_to_spool(self, receiver: HeliconeReceiver, tmp_path: Path) -> None:
        """With the queue full, records go to the spool instead of being dropped, and all of
        them arrive in the end."""
        spool = tmp_path / "spool"
        send_to(receiver, spool, queue_size=2, workers=1, retry_max_attempts=20)
        receiver.mode = "slow"
        receiver.delay = 0.3
        log_records(30)
        assert heliconetrace.flush(10.0)
        stats = current_stats()
        assert stats.dropped == 0
        assert stats.spooled >= 20
        receiver.mode = "ok"
        log_records(1, prefix="after")
        assert heliconetrace.flush(10.0)
        receiver.wait_for(31, timeout=15.0)
        assert users(receiver) == sorted([*(f"user-{index}" for index in range(30)), "after-0"])
        assert len(receiver.records) == 31

    def test_outage_keeps_queue_small(self, receiver: HeliconeReceiver, tmp_path: Path) -> None:
        """While Helicone fails, records beyond OUTAGE_QUEUE_SIZE go to the spool instead of
        memory, and after recovery every record arrives once."""
        spool = tmp_path / "spool"
        send_to(receiver, spool, retry_max_attempts=1000, retry_max_backoff=0.5, queue_size=5000)
        port = int(receiver.url.rsplit(":", 1)[1])
        receiver.stop()
        log_records(1, prefix="first")
        while current_stats().retried == 0:
            time.sleep(0.01)
        # In bursts the spool writer keeps up with; a faster caller would overrun its backlog.
        for burst in range(15):
            log_records(200, prefix=f"burst-{burst}")
            time.sleep(0.05)
        deadline = time.monotonic() + 10.0
        while current_stats().spooled < 2000 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = current_stats()
        assert stats.queue_depth <= OUTAGE_QUEUE_SIZE + 1
        assert stats.spooled + stats.queue_depth == 3001
        assert stats.dropped == 0

        receiver.start(port)
        assert heliconetrace.flush(30.0)
        log_records(1, prefix="after")
        assert heliconetrace.flush(10.0)
        receiver.wait_for(3002, timeout=30.0)
        deadline = time.monotonic() + 10.0
        while count_records(spool) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count_records(spool) == 0
        request_ids = {
            record["providerRequest"]["meta"]["Helicone-Request-Id"] for record in receiver.records
        }
        assert len(request_ids) == 3002
        assert len(receiver.records) == 3002

    def test_shutdown_deadline_spools(self, receiver: HeliconeReceiver, tmp_path: Path) -> None:
        """Records still in flight or queued when shutdown's deadline comes are spooled, and a
        later exporter delivers them."""
        spool = tmp_path / "spool"
        send_to(receiver, spool, workers=1)
        receiver.mode = "hang"
        log_records(3)
        exporter = EXPORTERS.peek()
        assert exporter is not None
        assert heliconetrace.shutdown(0.5) is True
        stats = exporter.stats()
        assert stats.spooled == 3
        assert stats.dropped == 0
        assert count_records(spool) == 3

        receiver.mode = "ok"
        send_to(receiver, spool)
        log_records(1, prefix="next")
        assert heliconetrace.flush(10.0)
        receiver.wait_for(4)
        assert users(receiver) == ["next-0", "user-0", "user-1", "user-2"]
        assert len(receiver.records) == 4

    def test_spool_limit_drops_newest(self, receiver: HeliconeReceiver, tmp_path: Path) -> None:
        """With spool_max_bytes reached, newer records are dropped as spool_full, and exactly
        the kept ones are replayed."""
        spool = tmp_path / "spool"
        send_to(receiver, spool, spool_max_bytes=4096, workers=1)
        receiver.mode = "500"
        log_records(12)
        assert heliconetrace.flush(10.0)
        stats = current_stats()
        assert stats.spooled + stats.dropped == 12
        assert stats.dropped_by_reason == {"spool_full": stats.dropped}
        assert stats.dropped > 0
        kept = count_records(spool)
        assert kept == stats.spooled

        receiver.mode = "ok"
        send_to(receiver, spool)
        log_records(1, prefix="next")
        assert heliconetrace.flush(10.0)
        receiver.wait_for(kept + 1)
        time.sleep(0.3)
        assert len(receiver.records) == kept + 1

    def test_replay_to_other_server_kind(
        self, receiver: HeliconeReceiver, jawn_receiver: HeliconeReceiver, tmp_path: Path
    ) -> None:
        """A record spooled for the worker and replayed to jawn gains the provider field."""
        spool = tmp_path / "spool"
        send_to(receiver, spool)
        receiver.mode = "500"
        with helicone_span(provider="anthropic", user="spooled"):
            pass
        assert heliconetrace.flush(10.0)
        assert count_records(spool) == 1

        heliconetrace.configure(api_key=TEST_KEY, base_url=jawn_receiver.url, spool_dir=spool)
        with helicone_span(user="trigger"):
            pass
        assert heliconetrace.flush(10.0)
        records = jawn_receiver.wait_for(2)
        replayed = next(
            item
            for item in records
            if item["providerRequest"]["meta"]["Helicone-User-Id"] == "spooled"
        )
        assert replayed["provider"] == "ANTHROPIC"
        assert_valid_record(replayed)
        assert len(jawn_receiver.records) == 2
        assert receiver.records == []

    def test_no_spool_without_key(self, tmp_path: Path, clean_configuration: Path) -> None:
        """Without an API key records go to the local file, and the spool stays unused."""
        spool = tmp_path / "spool"
        heliconetrace.configure(log_file=clean_configuration, spool_dir=spool)
        log_records(2)
        assert heliconetrace.flush(5.0)
        assert current_stats().written_locally == 2
        assert not spool.exists()


def run_replay_command(
    directory: Path, receiver_url: str, *arguments: str, key: str | None = TEST_KEY
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HELICONETRACE_LOG_URL": f"{receiver_url}/oai/v1/log",
    }
    environment.pop("HELICONETRACE_RAISE_INTERNAL_ERRORS", None)
    environment.pop("HELICONE_API_KEY", None)
    if key is not None:
        environment["HELICONE_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "heliconetrace", "replay", str(directory), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )


def fill_spool(directory: Path, sink: Path, count: int) -> None:
    """Spool `count` real records: log them to the local file, then copy them into a segment."""
    for index in range(count):
        with helicone_span(user=f"cli-{index}"):
            pass
    assert heliconetrace.flush(5.0)
    writer = SpoolWriter(directory, 10**9)
    for line in sink.read_bytes().splitlines()[-count:]:
        request_id = json.loads(line)["providerRequest"]["meta"]["Helicone-Request-Id"]
        assert (
            writer.append(
                SpooledRecord(line, "http://127.0.0.1:9/oai/v1/log", "worker", None, request_id)
            )
            is None
        )
    writer.seal()


class TestReplayCommand:
    def test_replay_delivers_and_removes(
        self, receiver: HeliconeReceiver, tmp_path: Path, clean_configuration: Path
    ) -> None:
        """`python -m heliconetrace replay DIR` delivers every record, empties DIR, exits 0."""
        spool = tmp_path / "spool"
        fill_spool(spool, clean_configuration, 5)
        result = run_replay_command(spool, receiver.url)
        assert result.returncode == 0, result.stderr
        assert "5 records delivered" in result.stdout
        assert len(receiver.records) == 5
        assert count_records(spool) == 0
        assert list(spool.iterdir()) == []

    def test_replay_down_keeps_records(self, tmp_path: Path, clean_configuration: Path) -> None:
        """With Helicone down, replay exits 1 at its timeout and keeps every record."""
        spool = tmp_path / "spool"
        fill_spool(spool, clean_configuration, 3)
        result = run_replay_command(spool, "http://127.0.0.1:9", "--timeout", "1")
        assert result.returncode == 1, result.stderr
        assert "3 left" in result.stdout
        assert count_records(spool) == 3

    def test_replay_401_keeps_records(
        self, receiver: HeliconeReceiver, tmp_path: Path, clean_configuration: Path
    ) -> None:
        """A rejected key stops the replay with the records kept, to replay after the fix."""
        spool = tmp_path / "spool"
        fill_spool(spool, clean_configuration, 3)
        receiver.mode = "401"
        result = run_replay_command(spool, receiver.url)
        assert result.returncode == 1, result.stderr
        assert count_records(spool) == 3
        assert len(receiver.requests) == 1
        assert receiver.records == []

    def test_replay_needs_key(self, tmp_path: Path) -> None:
        """Without an API key, replay exits 2 and names the variable to set."""
        spool = tmp_path / "spool"
        spool.mkdir()
        result = run_replay_command(spool, "http://127.0.0.1:9", key=None)
        assert result.returncode == 2
        assert "HELICONE_API_KEY" in result.stderr

    def test_replay_keeps_request_id(
        self, receiver: HeliconeReceiver, tmp_path: Path, clean_configuration: Path
    ) -> None:
        """A replayed record arrives with the Helicone-Request-Id it was spooled with."""
        spool = tmp_path / "spool"
        fill_spool(spool, clean_configuration, 1)
        (path,) = segment_paths(spool)
        (_, payload), *_ = read_frames(path.read_bytes(), len(FILE_HEADER))
        spooled = SpooledRecord.from_payload(payload)
        assert spooled is not None
        result = run_replay_command(spool, receiver.url)
        assert result.returncode == 0, result.stderr
        (delivered,) = receiver.records
        assert delivered["providerRequest"]["meta"]["Helicone-Request-Id"] == spooled.request_id


class TestSpoolSettings:
    def test_environment_sets_spool(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """HELICONETRACE_SPOOL_DIR and HELICONETRACE_SPOOL_MAX_BYTES set the spool."""
        monkeypatch.setenv("HELICONETRACE_SPOOL_DIR", str(tmp_path / "spool"))
        monkeypatch.setenv("HELICONETRACE_SPOOL_MAX_BYTES", "1048576")
        settings = resolve({})
        assert settings.spool_dir == tmp_path / "spool"
        assert settings.spool_max_bytes == 1048576

    def test_no_spool_by_default(self) -> None:
        """Without the setting there is no spool, and the bound defaults to 256 MiB."""
        settings = resolve({})
        assert settings.spool_dir is None
        assert settings.spool_max_bytes == 256 * 1024 * 1024

    def test_tiny_bound_rejected(self) -> None:
        """A spool bound below 4096 bytes is rejected with the variable's name."""
        with pytest.raises(heliconetrace.ConfigurationError, match="HELICONETRACE_SPOOL_MAX_BYTES"):
            heliconetrace.configure(spool_max_bytes=100)
