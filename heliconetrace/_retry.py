"""When to try Helicone again: exponential backoff with full jitter, `Retry-After`, and the
endpoint-wide gate that every delivering thread passes before it posts.

Outages, rate limits and restarts of Helicone hit the endpoint, not one record, so backoff is
kept per endpoint rather than per record. After a retryable failure no thread posts until the
delay has passed. Then one request goes first as a probe, and the others wait for its result. A
success opens the gate for all. While the gate is closed, records wait in the queue and their
attempts are not spent, so a long outage costs a few attempts, not one per queued record. A
record that fails on its own (a 500 caused by its content) holds the others back only until
it has spent its `retry_max_attempts`: at the default backoff, seconds.

    failure ──► closed until resume_at ──► one probe ──► success ──► open
                        ▲                       │
                        └──── failure ◄─────────┘

The delay after the n-th failure in a row is uniform in [0, min(max_backoff, 0.5 s * 2**(n-1))]
("full jitter"), so processes that failed together do not retry together. A `Retry-After`
header sets a floor under that delay, itself capped at `max_backoff`.
"""

from __future__ import annotations

import datetime
import email.utils
import random
import threading
import time
from typing import Final

BASE_BACKOFF: Final = 0.5
# How long a waiting thread sleeps before it looks again on its own; every change notifies.
IDLE_WAIT: Final = 1.0


def backoff_delay(failures: int, max_backoff: float, rng: random.Random | None = None) -> float:
    """Return the full-jitter delay in seconds after `failures` failures in a row."""
    exponent = min(max(failures, 1) - 1, 32)
    ceiling = min(max_backoff, BASE_BACKOFF * 2.0**exponent)
    return (rng or random).uniform(0.0, ceiling)


def parse_retry_after(value: str | None, now: datetime.datetime | None = None) -> float | None:
    """Return the seconds a `Retry-After` header requests, or None when it is missing or
    invalid. The header contains either seconds or an HTTP date."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds else None  # rejects NaN

    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        # RFC 9110 dates are in GMT; parsedate_to_datetime leaves "-0000" naive.
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    current = now or datetime.datetime.now(datetime.timezone.utc)
    return max(0.0, (moment - current).total_seconds())


class EndpointGate:
    """The endpoint-wide backoff state. Callers hold one lock around every method call."""

    def __init__(self, max_backoff: float) -> None:
        self.max_backoff = max_backoff
        # Retryable failures in a row; 0 means the gate is open.
        self.failures = 0
        # time.monotonic() before which no thread posts.
        self.resume_at = 0.0
        self.probe_out = False
        # Bumped by each counted failure, so that requests sent before it, failing later
        # together, count as one failure of the endpoint instead of doubling the delay each.
        self.epoch = 0

    @property
    def is_open(self) -> bool:
        return self.failures == 0

    def seconds_until_turn(self, now: float) -> float | None:
        """Return 0.0 when a request may go now, the seconds to wait, or None while a probe
        is out (wait for its result)."""
        if self.failures == 0:
            return 0.0
        if now < self.resume_at:
            return self.resume_at - now
        if self.probe_out:
            return None
        return 0.0

    def take_turn(self) -> int:
        """Mark a request as sent and return the epoch to report its result with."""
        if self.failures:
            self.probe_out = True
        return self.epoch

    def succeeded(self) -> None:
        self.failures = 0
        self.probe_out = False
        self.resume_at = 0.0

    def failed(self, now: float, epoch: int, retry_after: float | None) -> float:
        """Close the gate after a retryable failure; return the seconds until the next try."""
        if retry_after is not None:
            self.resume_at = max(self.resume_at, now + min(retry_after, self.max_backoff))
        if epoch == self.epoch:
            self.epoch += 1
            self.failures += 1
            self.probe_out = False
            delay = backoff_delay(self.failures, self.max_backoff)
            self.resume_at = max(self.resume_at, now + delay)
        elif self.failures == 0:
            # A request sent before the last success failed: count it as a new failure.
            self.failures = 1
            self.resume_at = max(self.resume_at, now + backoff_delay(1, self.max_backoff))
        return max(0.0, self.resume_at - now)

    def released(self, epoch: int) -> None:
        """Forget a probe that ended without a result (the record was taken away)."""
        if epoch == self.epoch:
            self.probe_out = False


class Gatekeeper:
    """The gate with the condition that delivering threads wait on, and the stop flag.

    The condition is the exporter's: its workers wait on it for records as well, so a stop, a
    new record and a change of the gate all wake the same waiters.
    """

    def __init__(self, condition: threading.Condition, max_backoff: float) -> None:
        self.condition = condition
        self.gate = EndpointGate(max_backoff)
        self.stopping = False

    def wait_turn(self, deadline: float | None = None) -> int | None:
        """Block until a request may go; return its epoch, or None when stopping or past the
        deadline (a time.monotonic() value)."""
        with self.condition:
            while True:
                now = time.monotonic()
                if self.stopping or (deadline is not None and now >= deadline):
                    return None
                wait = self.gate.seconds_until_turn(now)
                if wait == 0.0:
                    return self.gate.take_turn()
                timeout = IDLE_WAIT if wait is None else wait
                if deadline is not None:
                    timeout = min(timeout, deadline - now)
                self.condition.wait(timeout)

    def report(self, epoch: int, retry: bool, retry_after: float | None = None) -> float:
        """Record a request's result: `retry` for a retryable failure, else the server responded.
        Return the seconds until the next try (0.0 when the gate is open)."""
        with self.condition:
            if not retry:
                reopened = not self.gate.is_open
                self.gate.succeeded()
                if reopened:
                    self.condition.notify_all()
                return 0.0
            delay = self.gate.failed(time.monotonic(), epoch, retry_after)
            self.condition.notify_all()
            return delay

    def release(self, epoch: int) -> None:
        """Forget a request that ended without a result."""
        with self.condition:
            self.gate.released(epoch)
            self.condition.notify_all()

    def paused_past(self, moment: float) -> bool:
        """True when the gate stays closed until `moment` (a time.monotonic() value) or later."""
        gate = self.gate
        return not gate.is_open and gate.resume_at >= moment

    def stop(self) -> None:
        with self.condition:
            self.stopping = True
            self.condition.notify_all()
