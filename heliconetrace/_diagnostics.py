"""The toolkit's own log lines: one named structlog logger, rate-limited, never `print`.

Every internal failure passes through `internal_error()`, which logs it (at most once a minute
per place) and lets the caller's code go on. Set HELICONETRACE_RAISE_INTERNAL_ERRORS=1 to raise
them instead; the test suite does, so that a bug in the toolkit fails a test loudly.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Final

import structlog

LOGGER_NAME: Final = "heliconetrace"
ENV_RAISE_INTERNAL_ERRORS: Final = "HELICONETRACE_RAISE_INTERNAL_ERRORS"

# Repeats of one kind of event within this many seconds are counted, not logged.
REPEAT_INTERVAL: Final = 60.0

logger: Final = structlog.get_logger(LOGGER_NAME)


class RateLimiter:
    """Decide whether an event of a given kind may be logged now, counting the ones held back."""

    def __init__(self, interval: float = REPEAT_INTERVAL) -> None:
        self._interval = interval
        # Reentrant: a signal handler that logs may interrupt this thread inside `allow()`.
        self._lock = threading.RLock()
        self._last: dict[str, float] = {}
        self._held_back: dict[str, int] = {}

    def allow(self, kind: str) -> int | None:
        """Return None to hold the event back, or the count held back since the last one logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                self._held_back[kind] = self._held_back.get(kind, 0) + 1
                return None
            self._last[kind] = now
            return self._held_back.pop(kind, 0)

    def reset(self) -> None:
        with self._lock:
            self._last.clear()
            self._held_back.clear()

    def after_fork_in_child(self) -> None:
        """Start over with a new lock, which a thread of the parent may have held at the fork."""
        self._lock = threading.RLock()
        self._last.clear()
        self._held_back.clear()


RATE_LIMITER: Final = RateLimiter()
_announced: set[str] = set()
_announced_lock = threading.RLock()


def warning_limited(kind: str, event: str, **fields: Any) -> None:
    """Log a warning at most once per interval for this kind, with the count of repeats."""
    held_back = RATE_LIMITER.allow(kind)
    if held_back is None:
        return
    if held_back:
        fields["repeats_not_logged"] = held_back
    logger.warning(event, **fields)


def report_limited(kind: str, event: str, **fields: Any) -> None:
    """Log a warning at most once per interval for this kind, with `count`: the events of this
    kind since the last line logged for it, this one included."""
    held_back = RATE_LIMITER.allow(kind)
    if held_back is None:
        return
    logger.warning(event, count=held_back + 1, **fields)


def info_once(kind: str, event: str, **fields: Any) -> None:
    """Log an info line once per process for this kind."""
    with _announced_lock:
        if kind in _announced:
            return
        _announced.add(kind)
    logger.info(event, **fields)


def reset_announcements() -> None:
    """Forget which one-time lines were logged (after `configure()`)."""
    with _announced_lock:
        _announced.clear()
    RATE_LIMITER.reset()


def after_fork_in_child() -> None:
    """Give the child new locks and a clean slate, so its own problems are logged."""
    global _announced_lock
    _announced_lock = threading.RLock()
    _announced.clear()
    RATE_LIMITER.after_fork_in_child()


def raise_internal_errors() -> bool:
    return os.environ.get(ENV_RAISE_INTERNAL_ERRORS, "") not in ("", "0", "false")


def internal_error(where: str, error: Exception) -> None:
    """Report a failure inside heliconetrace; the caller's code goes on unless tests raise."""
    if raise_internal_errors():
        raise error
    warning_limited(
        f"internal:{where}",
        "heliconetrace caught an internal error; your code still runs, "
        "but this record may be incomplete",
        where=where,
        error_type=type(error).__name__,
        error=str(error)[:200],
    )
