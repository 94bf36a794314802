"""Process-wide controls: `configure()`, `flush()`, `shutdown()` and `stats()`."""

from __future__ import annotations

from heliconetrace._config import resolve
from heliconetrace._diagnostics import reset_announcements
from heliconetrace._lifecycle import EXPORTERS
from heliconetrace._stats import ExporterStats


def configure(**settings: object) -> None:
    """Set configuration for the whole process; arguments override the environment.

    Settings: api_key, base_url, log_url, enabled, log_file, queue_size, request_timeout,
    shutdown_timeout, workers, retry_max_attempts, retry_max_backoff, spool_dir,
    spool_max_bytes (the README's configuration table gives each one's environment variable,
    default and reason). An invalid value raises `ConfigurationError` naming the
    setting and the fix, and leaves the current configuration in place.

    Records already handed to the previous exporter are delivered with the previous settings,
    for at most the previous `shutdown_timeout` seconds; this call waits for that.
    """
    resolved = resolve(dict(settings))
    old = EXPORTERS.replace(resolved)
    reset_announcements()
    if old is not None:
        old.shutdown(old.settings.shutdown_timeout)


def flush(timeout: float) -> bool:
    """Wait until every record handed over before this call is finished, for at most `timeout`
    seconds. Return True only when all of them were delivered, written locally, spooled, or
    given up on (see `stats()`) by the deadline.

    Safe in a handler, a signal handler and an atexit hook. A record waiting for a retry is
    not finished, so during an outage flush() returns False at its deadline.
    """
    exporter = EXPORTERS.peek()
    if exporter is None:
        return True
    return exporter.flush(timeout)


def shutdown(timeout: float) -> bool:
    """Deliver what is queued for at most `timeout` seconds, then stop the background threads.

    With a spool, records still undelivered shortly before the deadline are written to it;
    without one they are dropped. Records logged after this call start a new exporter. Return
    True when no record had to be dropped at the deadline.
    """
    exporter = EXPORTERS.peek()
    if exporter is None:
        return True
    finished = exporter.shutdown(timeout)
    EXPORTERS.replace(exporter.settings)
    EXPORTERS.last_shut_down = exporter
    return finished


def stats() -> ExporterStats:
    """Return delivery counters of the current exporter.

    After `shutdown()`, and until a record starts a new exporter, they are the final counts of
    the one that was shut down. Zeros before the first record, and after `configure()`.
    """
    exporter = EXPORTERS.peek() or EXPORTERS.last_shut_down
    if exporter is None:
        return ExporterStats()
    return exporter.stats()
