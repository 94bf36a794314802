"""The background exporter: a bounded queue and a pool of daemon threads that deliver records.

`submit()` never blocks and never raises: it appends the ended span to a bounded queue, or
drops it and counts the drop when the queue is full, so memory stays bounded while Helicone is
down. It is safe from an event loop: the append is one `deque.append`, and waking an idle worker
takes a lock only for a moment.

Worker threads assemble each record from its ended span and post it with one shared
`httpx.Client` (connection reuse, timeouts), or append it to the local sink when no API key is
set. They are daemon threads, so a hung Helicone
never keeps the interpreter alive: exit waits for them at most `shutdown_timeout` seconds.
"""

from __future__ import annotations

import atexit
import collections
import itertools
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import httpx

from heliconetrace._assemble import assemble
from heliconetrace._config import SETTINGS, Settings
from heliconetrace._diagnostics import internal_error, logger, warning_limited
from heliconetrace._endpoint import resolve_endpoint
from heliconetrace._redact import redact_text
from heliconetrace._sink import LocalSink
from heliconetrace._stats import Counters, ExporterStats

if TYPE_CHECKING:
    from heliconetrace._span import Span

USER_AGENT: Final = "heliconetrace/0.1"

_HINTS: Final = {
    401: "Helicone rejected the API key. A key works only on the Helicone instance and region "
    "that issued it: EU keys need eu.api.helicone.ai, and a self-hosted server knows only its "
    "own keys. Also check the URL has no extra prefix such as /jawn.",
    403: "Helicone refused the API key for this organization; check its permissions.",
    404: "The server has no such log path. A self-hosted or jawn server takes "
    "/v1/trace/custom/log: set HELICONE_BASE_URL to the server's root URL, or "
    "HELICONETRACE_LOG_URL to the full log URL.",
}
_HINT_SERVER_ERROR: Final = "Helicone had a server error and did not store the record."
_HINT_REJECTED: Final = "Helicone rejected the record; the error text says why."
_HINT_NETWORK: Final = "Helicone could not be reached; check HELICONE_BASE_URL and the network."


@dataclass(frozen=True, slots=True)
class Envelope:
    """A serialized record and where it goes."""

    body: bytes
    url: str
    request_id: str


class _Tracker:
    """Track which submitted records are finished, so `flush()` can wait for earlier ones only."""

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
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

    def wait(self, up_to: int, deadline: float) -> bool:
        """Wait until every record numbered up to `up_to` is finished, or the deadline passes."""
        with self._condition:
            while self._open and self._open[0] <= up_to:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True


def _delivery_error(response: httpx.Response) -> str | None:
    """Return why Helicone did not store the record, or None when it did."""
    if 200 <= response.status_code < 300:
        # The worker returns 200 {"error": ...} when storing fails, so a 200 is not enough.
        content = response.content
        if content.lstrip().startswith(b"{"):
            try:
                parsed = json.loads(content)
            except ValueError:
                return None
            if isinstance(parsed, dict) and parsed.get("error"):
                return str(parsed["error"])[:300]
        return None
    if response.status_code in (401, 403):
        # A 401 body from jawn echoes the Authorization header, so it is never logged.
        return f"HTTP {response.status_code}"
    return f"HTTP {response.status_code}: {response.text[:300]}"


class Exporter:
    """Deliver records in the background for one set of settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pending: collections.deque[tuple[int, Span]] = collections.deque()
        self._wake = threading.Condition(threading.Lock())
        self._idle_workers = 0
        self._stopping = False
        self._tracker = _Tracker()
        self._counters = Counters()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._client: httpx.Client | None = None
        self._sink = None if settings.sends_to_helicone else LocalSink(settings.log_file)
        self._closed = False
        self._secrets = (
            (settings.api_key.get_secret_value(),) if settings.api_key is not None else ()
        )

    def submit(self, span: Span) -> bool:
        """Queue an ended span for delivery; return False when it was dropped instead."""
        if self._closed:
            self._counters.add(accepted=1, dropped=1)
            warning_limited("exporter-closed", "heliconetrace dropped a record: it is shut down")
            return False

        # NOTE: the length check and the append are not one atomic step, so producers racing
        # on a nearly full queue can overshoot queue_size by at most one record each.
        if len(self._pending) >= self.settings.queue_size:
            self._counters.add(accepted=1, dropped=1)
            warning_limited(
                "queue-full",
                "heliconetrace dropped a record because its queue is full; Helicone is slow or "
                "down, or records come faster than it takes them",
                queue_size=self.settings.queue_size,
                fix="raise HELICONETRACE_QUEUE_SIZE, or check that Helicone responds",
            )
            return False

        # The tracker's count doubles as the count of records accepted into the queue.
        self._pending.append((self._tracker.start(), span))
        if len(self._threads) < self.settings.workers:
            self._start_workers()
        elif self._idle_workers:
            with self._wake:
                self._wake.notify()
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until every record submitted before this call is finished (delivered, written,
        failed or dropped). Return False if the deadline came first."""
        deadline = time.monotonic() + max(0.0, timeout)
        return self._tracker.wait(self._tracker.last_started, deadline)

    def shutdown(self, timeout: float) -> bool:
        """Stop taking records, deliver what is queued until the deadline, and stop the workers.

        Return True when everything queued was finished in time. Records still queued at the
        deadline are counted as dropped.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            threads = list(self._threads)

        finished = self._tracker.wait(self._tracker.last_started, deadline)
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

        abandoned = 0
        while self._pending:
            number, _ = self._pending.popleft()
            self._tracker.finish(number)
            abandoned += 1
        if abandoned:
            self._counters.add(dropped=abandoned)
        if self._client is not None and not any(thread.is_alive() for thread in threads):
            self._client.close()

        stats = self.stats()
        if stats.accepted:
            logger.info(
                "heliconetrace exporter stopped",
                delivered=stats.delivered,
                written_locally=stats.written_locally,
                failed=stats.failed,
                dropped=stats.dropped,
                finished_in_time=finished,
            )
        return finished

    def stats(self) -> ExporterStats:
        return self._counters.snapshot(
            queue_depth=len(self._pending), queued_total=self._tracker.last_started
        )

    def _start_workers(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            while len(self._threads) < self.settings.workers:
                thread = threading.Thread(
                    target=self._run,
                    name=f"heliconetrace-exporter-{len(self._threads)}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)

    def _next_item(self) -> tuple[int, Span] | None:
        """Return the next queued item, waiting while there is none; None when stopping."""
        while True:
            try:
                return self._pending.popleft()
            except IndexError:
                pass
            with self._wake:
                if self._stopping:
                    return None
                # A producer that appends after this check sees the idle count and notifies.
                self._idle_workers += 1
                if not self._pending:
                    self._wake.wait(1.0)
                self._idle_workers -= 1

    def _run(self) -> None:
        while True:
            item = self._next_item()
            if item is None:
                return
            number, span = item
            try:
                self._deliver(span)
            except Exception as error:
                self._counters.add(failed=1)
                internal_error("exporter.deliver", error)
            finally:
                self._tracker.finish(number)

    def _http_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                key = self.settings.api_key
                assert key is not None
                workers = self.settings.workers
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.settings.request_timeout),
                    limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
                    headers={
                        "Authorization": f"Bearer {key.get_secret_value()}",
                        "Content-Type": "application/json",
                        "User-Agent": USER_AGENT,
                    },
                )
            return self._client

    def _deliver(self, span: Span) -> None:
        settings = self.settings
        endpoint = resolve_endpoint(settings.base_url, settings.log_url, span.metadata.provider)
        envelope = Envelope(
            body=assemble(span, endpoint, self._secrets),
            url=endpoint.url,
            request_id=span.request_id,
        )
        if self._sink is not None:
            self._sink.write(envelope.body)
            self._counters.add(written_locally=1)
            return

        try:
            response = self._http_client().post(envelope.url, content=envelope.body)
        except httpx.HTTPError as error:
            network_reason = redact_text(f"{type(error).__name__}: {error}", self._secrets)
            self._fail(envelope, "network", network_reason, _HINT_NETWORK)
            return

        reason = _delivery_error(response)
        if reason is None:
            self._counters.add(delivered=1)
            return
        status = response.status_code
        if status in _HINTS:
            hint = _HINTS[status]
        elif status >= 500:
            hint = _HINT_SERVER_ERROR
        else:
            hint = _HINT_REJECTED
        self._fail(envelope, f"http-{status}", redact_text(reason, self._secrets), hint)

    def _fail(self, envelope: Envelope, kind: str, reason: str, hint: str) -> None:
        self._counters.add(failed=1, last_error=reason)
        warning_limited(
            f"delivery:{kind}",
            "heliconetrace could not deliver a record to Helicone",
            endpoint=envelope.url,
            request_id=envelope.request_id,
            error=reason,
            fix=hint,
        )


class _ExporterHolder:
    """The process-wide exporter, created on first use and replaced by `configure()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exporter: Exporter | None = None

    def get(self) -> Exporter:
        exporter = self._exporter
        if exporter is None:
            with self._lock:
                if self._exporter is None:
                    self._exporter = Exporter(SETTINGS.get())
                exporter = self._exporter
        return exporter

    def peek(self) -> Exporter | None:
        return self._exporter

    def replace(self, settings: Settings) -> Exporter | None:
        """Install settings; return the old exporter (the caller shuts it down)."""
        with self._lock:
            old, self._exporter = self._exporter, None
            SETTINGS.replace(settings)
        return old

    def after_fork_in_child(self) -> None:
        # The parent's threads do not exist in the child, and its locks may have been held at
        # the fork: start over with new ones, and leave the parent's exporter alone.
        self._lock = threading.Lock()
        self._exporter = None


EXPORTERS: Final = _ExporterHolder()


def get_exporter() -> Exporter:
    return EXPORTERS.get()


def _shutdown_at_exit() -> None:
    exporter = EXPORTERS.peek()
    if exporter is None:
        return
    try:
        exporter.shutdown(exporter.settings.shutdown_timeout)
    except Exception as error:
        internal_error("exporter.atexit", error)


atexit.register(_shutdown_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=EXPORTERS.after_fork_in_child)
