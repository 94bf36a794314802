"""The durable spool: records that could not be delivered, kept on disk until a replay.

Layout. One directory, shared by any number of processes. Each process appends to its own
segment file, `<time_ns>-<pid>-<random>.seg`, and keeps an exclusive `flock` on it while it
writes. A process replaying a segment locks it the same way. A lock is tied to the open file,
so it ends when the process ends, `kill -9` included, and no process ever reads a segment that
another one writes or replays. A forked child closes its copies of the parent's descriptors
(see the exporter's fork hook), so it neither keeps the parent's locks nor claims its segments.

Format. A segment starts with `FILE_HEADER`, then one frame per record:

    magic b"\\xffHT1" | payload length (u32, big-endian) | CRC-32 of payload (u32) | payload

The payload is one line of JSON with where the record goes (URL, server kind, provider, request
id), a newline, then the record body exactly as it would be posted. The magic contains 0xFF,
which never occurs in UTF-8, so a reader that meets a damaged frame finds the next one by
searching for the magic. A frame cut short by a crash is the last one in its file (a new process
starts a new segment), and readers ignore it. Earlier frames are never rewritten.

Durability. Each frame is written with write(2) on a file opened with O_APPEND, so a record is
in the kernel's page cache once `append()` returns and survives the death of the process.
A killed process loses none of them. fsync(2), which also protects against power loss and OS
crashes, runs when a segment is closed (full, sealed for replay, or at shutdown) and, while
records keep coming, at most once a second. So a power failure can lose the records written
since the last fsync: up to a second's worth, or those written just before a pause.

Replay. A replaying process records its progress in `<segment>.done`, as frames of 8-byte
offsets, after each settled record, and deletes the segment (then that file) when all its
records are settled. A replay cut short resumes after the last offset recorded, so at most the
record in flight at the cut is delivered twice.

Size. Appending stops, and the record is dropped and counted, when the directory's files
would pass `max_bytes`. The newest records are the ones dropped: deleting the oldest would mean
deleting segments that another process may be replaying. The usage is re-read from the
directory at most once a second, so several processes writing at once can pass the bound by
what they write in that second.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from heliconetrace._stats import DROP_SPOOL_ERROR, DROP_SPOOL_FULL

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

FILE_HEADER: Final = b"HELICONETRACE-SPOOL-1\n"
FRAME_MAGIC: Final = b"\xffHT1"
FRAME: Final = struct.Struct(">4sII")
OFFSET: Final = struct.Struct(">Q")

SEGMENT_SUFFIX: Final = ".seg"
PENDING_SUFFIX: Final = ".tmp"
PROGRESS_SUFFIX: Final = ".done"

# Larger payloads are damage, not records: jawn takes at most 50 MiB.
MAX_PAYLOAD: Final = 64 * 1024 * 1024
# A new segment is started past this size, so that a replay finishes and deletes files often.
SEGMENT_MAX_BYTES: Final = 4 * 1024 * 1024
FSYNC_INTERVAL: Final = 1.0
USAGE_RESCAN_INTERVAL: Final = 1.0
# A pending file (created, not yet renamed to .seg) older than this belongs to a dead process.
STALE_PENDING_SECONDS: Final = 60.0


def spool_supported() -> bool:
    """True where the spool works: it needs flock(2), which Windows lacks."""
    return fcntl is not None


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """A record body and where it was going."""

    body: bytes
    url: str
    server: str
    provider: str | None
    request_id: str

    def to_payload(self) -> bytes:
        header = {
            "v": 1,
            "url": self.url,
            "server": self.server,
            "provider": self.provider,
            "request_id": self.request_id,
        }
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + self.body

    @classmethod
    def from_payload(cls, payload: bytes) -> SpooledRecord | None:
        """Decode a payload; None when it is not one this version wrote."""
        line, newline, body = payload.partition(b"\n")
        if not newline:
            return None
        try:
            header: Any = json.loads(line)
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("v") != 1:
            return None
        url, server, provider = header.get("url"), header.get("server"), header.get("provider")
        request_id = header.get("request_id")
        if not (isinstance(url, str) and isinstance(server, str) and isinstance(request_id, str)):
            return None
        if provider is not None and not isinstance(provider, str):
            return None
        return cls(body, url, server, provider, request_id)


def encode_frame(payload: bytes) -> bytes:
    return FRAME.pack(FRAME_MAGIC, len(payload), zlib.crc32(payload)) + payload


def read_frames(data: bytes, start: int) -> Iterator[tuple[int, bytes]]:
    """Yield (offset after the frame, payload) for each intact frame from `start` on.

    Damaged bytes are skipped up to the next frame magic; a frame cut short at the end (a torn
    tail) ends the iteration.
    """
    position = start
    size = len(data)
    while position + FRAME.size <= size:
        magic, length, checksum = FRAME.unpack_from(data, position)
        end = position + FRAME.size + length
        if magic == FRAME_MAGIC and length <= MAX_PAYLOAD and end <= size:
            payload = bytes(data[position + FRAME.size : end])
            if zlib.crc32(payload) == checksum:
                yield end, payload
                position = end
                continue
        position = data.find(FRAME_MAGIC, position + 1)
        if position < 0:
            return


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1024 * 1024, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(directory: Path) -> None:
    """Make a new file name durable; some file systems cannot, which is fine."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sync_and_close(descriptors: list[int]) -> None:
    for fd in descriptors:
        with contextlib.suppress(OSError):
            os.fsync(fd)
        with contextlib.suppress(OSError):
            os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class SpoolWriter:
    """Append records to this process's segment of a spool directory, from any thread."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._segment_bytes = 0
        self._usage = 0
        self._usage_checked_at = -USAGE_RESCAN_INTERVAL
        self._fsynced_at = 0.0
        self.last_error: str | None = None

    def append(self, record: SpooledRecord) -> str | None:
        """Write one record; return None, or the drop reason when it could not be written."""
        return self.append_many([record])[0]

    def append_many(self, records: Sequence[SpooledRecord]) -> list[str | None]:
        """Write records in order, each segment's share with one write(2); return None or the
        drop reason for each.

        One write for many records matters when the application keeps the GIL busy: a thread
        that releases the GIL for a system call may wait a whole switch interval (5 ms) to get
        it back.
        """
        frames = [encode_frame(record.to_payload()) for record in records]
        results: list[str | None] = [None] * len(frames)
        # fsync(2) can take long on a busy disk, so it runs after the lock is released, on
        # descriptors of their own: a closed segment's, or a duplicate of the current one.
        to_sync: list[int] = []
        new_segment = False
        with self._lock:
            now = time.monotonic()
            if now - self._usage_checked_at >= USAGE_RESCAN_INTERVAL:
                self._rescan_usage(now)
            batch: list[int] = []
            pending = 0
            for index, frame in enumerate(frames):
                if self._usage + pending + len(frame) > self.max_bytes:
                    results[index] = DROP_SPOOL_FULL
                    continue
                if self._needs_new_segment(pending, len(frame)):
                    self._write_batch(frames, batch, results)
                    batch, pending = [], 0
                    if self._fd is not None:
                        to_sync.append(self._fd)
                        self._fd = None
                    try:
                        self._start_segment()
                    except OSError as error:
                        self.last_error = f"{type(error).__name__}: {error}"
                        results[index] = DROP_SPOOL_ERROR
                        continue
                    new_segment = True
                batch.append(index)
                pending += len(frame)
            self._write_batch(frames, batch, results)
            if self._fd is not None and now - self._fsynced_at >= FSYNC_INTERVAL:
                with contextlib.suppress(OSError):
                    to_sync.append(os.dup(self._fd))
                self._fsynced_at = now
        if new_segment:
            _fsync_directory(self.directory)
        _sync_and_close(to_sync)
        return results

    def _needs_new_segment(self, pending: int, frame: int) -> bool:
        if self._fd is None:
            return True
        written = self._segment_bytes + pending
        return written + frame > SEGMENT_MAX_BYTES and written > len(FILE_HEADER)

    def _write_batch(
        self, frames: list[bytes], batch: list[int], results: list[str | None]
    ) -> None:
        if not batch:
            return
        assert self._fd is not None
        data = b"".join(frames[index] for index in batch)
        try:
            _write_all(self._fd, data)
        except OSError as error:
            # Cut a partial frame off, so the next record starts on a frame boundary.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._segment_bytes)
            self.last_error = f"{type(error).__name__}: {error}"
            for index in batch:
                results[index] = DROP_SPOOL_ERROR
            return
        self._segment_bytes += len(data)
        self._usage += len(data)

    def _rescan_usage(self, now: float) -> None:
        usage = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.endswith((SEGMENT_SUFFIX, PENDING_SUFFIX, PROGRESS_SUFFIX)):
                    with contextlib.suppress(OSError):
                        usage += entry.stat().st_size
        self._usage = usage
        self._usage_checked_at = now

    def _start_segment(self) -> None:
        """Open a new segment, locked before any reader can see it; the current one must be
        closed already."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
        pending = self.directory / (name + PENDING_SUFFIX)
        fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            if not _try_lock(fd):
                raise OSError(f"cannot lock the new spool segment {pending}")
            _write_all(fd, FILE_HEADER)
            os.rename(pending, self.directory / (name + SEGMENT_SUFFIX))
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                pending.unlink()
            raise
        self._fd = fd
        self._segment_bytes = len(FILE_HEADER)
        self._usage += len(FILE_HEADER)

    def seal(self, *, fsync: bool = True) -> None:
        """Close the current segment, which unlocks it for replay; the next record starts a new
        one. The lock is released when the descriptor is closed, after the fsync."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        if fsync:
            _sync_and_close([fd])
        else:
            with contextlib.suppress(OSError):
                os.close(fd)

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited descriptor. The parent's lock stays, because
        it ends only when every descriptor of the open file is closed."""
        self._lock = threading.Lock()
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class SegmentClaim:
    """A segment that this process has locked to replay, with its replay progress."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._progress_fd: int | None = None
        self.progress_path = path.with_name(path.name + PROGRESS_SUFFIX)

    def records(self) -> Iterator[tuple[int, SpooledRecord | None]]:
        """Yield (offset after it, record) for each record not settled yet; None for a frame
        whose payload this version cannot read."""
        assert self._fd is not None
        # Read whole, not mapped: a mapping keeps a duplicate of the descriptor, and with it
        # the lock, open until it is closed. A segment is at most SEGMENT_MAX_BYTES plus one
        # record.
        data = _read_all(self._fd)
        start = max(len(FILE_HEADER), read_progress(self.progress_path))
        for end, payload in read_frames(data, start):
            yield end, SpooledRecord.from_payload(payload)

    def has_header(self) -> bool:
        assert self._fd is not None
        return os.pread(self._fd, len(FILE_HEADER), 0) == FILE_HEADER

    def settle(self, offset: int) -> None:
        """Record that every record before `offset` is delivered or given up."""
        if self._progress_fd is None:
            self._progress_fd = os.open(
                self.progress_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
            )
        _write_all(self._progress_fd, encode_frame(OFFSET.pack(offset)))

    def finish(self) -> None:
        """Delete the segment, all of whose records are settled, then its progress file."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.progress_path.unlink()
        self.release()

    def release(self) -> None:
        """Unlock the segment and keep it, for a later replay to continue."""
        for fd in (self._fd, self._progress_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._progress_fd = None


def read_progress(path: Path) -> int:
    """Return the last offset recorded in a progress file, or 0."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    offset = 0
    for _, payload in read_frames(data, 0):
        if len(payload) == OFFSET.size:
            (offset,) = OFFSET.unpack(payload)
    return offset


def try_claim(path: Path) -> SegmentClaim | None:
    """Lock a segment for replay; None when another process (or thread) holds it or it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if not _try_lock(fd):
            os.close(fd)
            return None
        # The file may have been replayed and deleted between open() and flock().
        opened, current = os.fstat(fd), os.stat(path)
    except OSError:
        os.close(fd)
        return None
    if (opened.st_dev, opened.st_ino) != (current.st_dev, current.st_ino):
        os.close(fd)
        return None
    return SegmentClaim(path, fd)


def _remove_leftovers(directory: Path) -> None:
    """Delete progress files without a segment, and pending files of dead processes."""
    now = time.time()
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
        for entry in list(entries):
            path = Path(entry.path)
            with contextlib.suppress(OSError):
                if entry.name.endswith(PROGRESS_SUFFIX):
                    if not path.with_name(entry.name[: -len(PROGRESS_SUFFIX)]).exists():
                        path.unlink()
                elif (
                    entry.name.endswith(PENDING_SUFFIX)
                    and now - entry.stat().st_mtime > STALE_PENDING_SECONDS
                ):
                    claim = try_claim(path)
                    if claim is not None:
                        claim.finish()


def segment_paths(directory: Path) -> list[Path]:
    """Return the directory's segments, oldest first."""
    try:
        return sorted(directory.glob("*" + SEGMENT_SUFFIX))
    except OSError:
        return []


def claim_segments(directory: Path) -> Iterator[SegmentClaim]:
    """Yield the directory's segments that no other process or thread writes or replays, oldest
    first, each locked."""
    _remove_leftovers(directory)
    for path in segment_paths(directory):
        claim = try_claim(path)
        if claim is not None:
            yield claim


def count_records(directory: Path) -> int:
    """Return the count of records in the directory's segments not yet replayed."""
    count = 0
    for path in segment_paths(directory):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if not data.startswith(FILE_HEADER):
            continue
        progress = path.with_name(path.name + PROGRESS_SUFFIX)
        start = max(len(FILE_HEADER), read_progress(progress))
        count += sum(1 for _ in read_frames(data, start))
    return count
