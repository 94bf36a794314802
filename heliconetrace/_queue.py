"""The exporter's queues and their items, and the tracker `flush()` waits on."""

from __future__ import annotations

import collections
import itertools
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from heliconetrace._span import Span


@dataclass(frozen=True, slots=True)
class Envelope:
    """A serialized record and where it goes."""

    body: bytes
    url: str
    server: str
    provider: str | None
    request_id: str


@dataclass(slots=True, eq=False)
class Job:
    """One accepted record on its way: the ended span until a thread assembles it, then the
    envelope, with the attempts spent on it."""

    number: int
    span: Span | None
    envelope: Envelope | None = None
    attempts: int = 0
    trimmed: bool = False
    # The endpoint gate's epoch when the current attempt was sent.
    epoch: int = 0


class Tracker:
    """Track which accepted records are finished, so `flush()` can wait for earlier ones only."""

    def __init__(self) -> None:
        # Reentrant, so that flush() in a signal handler cannot deadlock on the lock held by
        # the code it interrupted in the same thread.
        self._condition = threading.Condition(threading.RLock())
        self._numbers = itertools.count(1)
        self._last = 0
        self._open: collections.deque[int] = collections.deque()
        self._finished_early: set[int] = set()

    def start(self) -> int:
        # No lock on the caller's path: `next()` on itertools.count and `deque.append` are each
        # atomic under the GIL. Two racing callers may append out of order, and `_last` may
        # briefly lag behind the other's number; `wait()` tolerates both.
        # NOTE: this relies on the GIL; a free-threaded build would need a lock here.
        number = next(self._numbers)
        self._open.append(number)
        self._last = number
        return number

    def finish(self, number: int) -> None:
        with self._condition:
            self._finished_early.add(number)
            while self._open and self._open[0] in self._finished_early:
                self._finished_early.discard(self._open.popleft())
            self._condition.notify_all()

    @property
    def last_started(self) -> int:
        return self._last

    @property
    def open_count(self) -> int:
        """Records started and not finished."""
        return max(0, len(self._open) - len(self._finished_early))

    def wait(self, up_to: int, deadline: float) -> bool:
        """Wait until every record numbered up to `up_to` is finished, or the deadline passes."""
        with self._condition:
            while self._open and self._open[0] <= up_to:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True


class Queues:
    """An exporter's queues, the jobs its workers hold, and the conditions its threads wait on.

    Both conditions use reentrant locks: flush(), shutdown() and stats() may run in a signal
    handler that interrupted this same thread while it held one of them.
    """

    def __init__(self) -> None:
        # Ended spans from callers, oldest first.
        self.pending: collections.deque[tuple[int, Span]] = collections.deque()
        # Jobs to send again (after a failure, or trimmed), taken before `pending`.
        self.retrying: collections.deque[Job] = collections.deque()
        # Spans that found `pending` full, for the spool writer.
        self.overflow: collections.deque[tuple[int, Span]] = collections.deque()
        # Jobs a worker took. The first to pop a job here (its worker, or shutdown) settles it.
        self.in_flight: dict[int, Job] = {}
        self.wake = threading.Condition(threading.RLock())
        self.spool_wake = threading.Condition(threading.RLock())
        self.idle_workers = 0
        self.spool_writer_idle = False

    def claim(self, job: Job) -> bool:
        """Take the right to settle a job a worker holds; False when shutdown took it first."""
        return self.in_flight.pop(job.number, None) is not None

    def requeue(self, job: Job) -> None:
        with self.wake:
            self.retrying.appendleft(job)
            self.wake.notify()
