"""Delivery counters an application can poll for health (`heliconetrace.stats()`)."""

from __future__ import annotations

import threading
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

# Drop reasons, the keys of `ExporterStats.dropped_by_reason`.
DROP_QUEUE_FULL: Final = "queue_full"
DROP_SPOOL_BACKLOG: Final = "spool_backlog"
DROP_SPOOL_FULL: Final = "spool_full"
DROP_SPOOL_ERROR: Final = "spool_error"
DROP_RETRIES_EXHAUSTED: Final = "retries_exhausted"
DROP_SHUTDOWN_DEADLINE: Final = "shutdown_deadline"
DROP_EXPORTER_CLOSED: Final = "exporter_closed"
DROP_TOO_LARGE: Final = "too_large"
DROP_WORKER_ERROR: Final = "worker_error"


class ExporterStats(BaseModel):
    """Counts since the exporter started (a `configure()` call starts a new one).

    Every record the application hands over counts in `accepted`. Once the exporter is idle,
    it also counts in exactly one of `delivered`, `written_locally`, `failed`, `spooled` and
    `dropped`, and until then in `queue_depth`. Records read back from the spool count apart,
    in `replayed` and `replay_failed`.
    """

    model_config = ConfigDict(frozen=True)

    accepted: int = 0
    # Helicone stored it (2xx without an error body).
    delivered: int = 0
    # No API key: appended to the local file.
    written_locally: int = 0
    # Helicone rejected it and a retry would not help (400, 401, 403, 404, 413 after trimming),
    # or heliconetrace failed to build it.
    failed: int = 0
    # Attempts repeated after a network error, a timeout, 408, 429, 5xx or a 200 error body.
    retried: int = 0
    # Written to the spool directory, to be delivered by a later replay.
    spooled: int = 0
    # Given up without delivery; `dropped_by_reason` gives the reason.
    dropped: int = 0
    dropped_by_reason: dict[str, int] = Field(default_factory=dict)
    # Records from the spool delivered, and rejected for good, by this exporter.
    replayed: int = 0
    replay_failed: int = 0
    # Accepted and not finished yet: queued, in flight, waiting to retry or to be spooled.
    queue_depth: int = 0
    last_error: str | None = None


_COUNTER_NAMES: Final = (
    "accepted",
    "delivered",
    "written_locally",
    "failed",
    "retried",
    "spooled",
    "dropped",
    "replayed",
    "replay_failed",
)


class Counters:
    """Thread-safe counters behind `ExporterStats`."""

    def __init__(self) -> None:
        # Reentrant, so that stats() in a signal handler cannot deadlock on a lock held by the
        # code it interrupted.
        self._lock = threading.RLock()
        self._values = dict.fromkeys(_COUNTER_NAMES, 0)
        self._dropped_by_reason: dict[str, int] = {}
        self._last_error: str | None = None

    def add(self, *, last_error: str | None = None, **increments: int) -> None:
        with self._lock:
            for name, amount in increments.items():
                self._values[name] += amount
            if last_error is not None:
                self._last_error = last_error

    def value(self, name: str) -> int:
        with self._lock:
            return self._values[name]

    def drop(self, reason: str, count: int = 1, *, accepted: int = 0) -> None:
        """Count `count` dropped records under `reason` (and `accepted` ones taken at the door)."""
        with self._lock:
            self._values["dropped"] += count
            self._values["accepted"] += accepted
            self._dropped_by_reason[reason] = self._dropped_by_reason.get(reason, 0) + count

    def snapshot(self, queue_depth: int, queued_total: int) -> ExporterStats:
        """Return the counters; `queued_total` (records that entered the queue) adds to
        `accepted`, which otherwise counts only the records dropped at the door."""
        with self._lock:
            values = dict(self._values)
            by_reason = dict(self._dropped_by_reason)
            last_error = self._last_error
        values["accepted"] += queued_total
        return ExporterStats(
            **values,
            dropped_by_reason=by_reason,
            queue_depth=queue_depth,
            last_error=last_error,
        )
