"""Delivery counters an application can poll for health (`heliconetrace.stats()`)."""

from __future__ import annotations

import threading

from pydantic import BaseModel, ConfigDict


class ExporterStats(BaseModel):
    """Counts since the exporter started (a `configure()` call starts a new one)."""

    model_config = ConfigDict(frozen=True)

    accepted: int = 0
    delivered: int = 0
    written_locally: int = 0
    failed: int = 0
    dropped: int = 0
    queue_depth: int = 0
    last_error: str | None = None


class Counters:
    """Thread-safe counters behind `ExporterStats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(
            ("accepted", "delivered", "written_locally", "failed", "dropped"), 0
        )
        self._last_error: str | None = None

    def add(self, *, last_error: str | None = None, **increments: int) -> None:
        with self._lock:
            for name, amount in increments.items():
                self._values[name] += amount
            if last_error is not None:
                self._last_error = last_error

    def snapshot(self, queue_depth: int, queued_total: int) -> ExporterStats:
        """Return the counters; `queued_total` (records that entered the queue) adds to
        `accepted`, which otherwise counts only the records dropped at the door."""
        with self._lock:
            values = dict(self._values)
            last_error = self._last_error
        values["accepted"] += queued_total
        return ExporterStats(**values, queue_depth=queue_depth, last_error=last_error)
