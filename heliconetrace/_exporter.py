"""The background exporter: a bounded queue and a pool of daemon threads that deliver records.

`submit()` never blocks and never raises: it puts the record on a bounded queue, or drops it
and counts the drop when the queue is full, so memory stays bounded while Helicone is down. It
is safe from an event loop, since `queue.Queue.put_nowait` only takes a lock for a moment.

Worker threads post each record with one shared `httpx.Client` (connection reuse, timeouts), or
append it to the local sink when no API key is set. They are daemon threads, so a hung Helicone
never keeps the interpreter alive: exit waits for them at most `shutdown_timeout` seconds.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Final

import httpx

from heliconetrace._config import SETTINGS, Settings
from heliconetrace._diagnostics import internal_error, logger, warning_limited
from heliconetrace._redact import redact_text
from heliconetrace._sink import LocalSink
from heliconetrace._stats import Counters, ExporterStats

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
        self._condition = threading.Condition()
        self._next = 0
        self._open: collections.deque[int] = collections.deque()
        self._finished_early: set[int] = set()

    def start(self) -> int:
        with self._condition:
            self._next += 1
            self._open.append(self._next)
            return self._next

    def finish(self, number: int) -> None:
        with self._condition:
            self._finished_early.add(number)
            while self._open and self._open[0] in self._finished_early:
                self._finished_early.discard(self._open.popleft())
            self._condition.notify_all()

    @property
    def last_started(self) -> int:
        with self._condition:
            return self._next

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
        # The worker answers 200 {"error": ...} when storing fails, so a 200 is not enough.
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
        self._queue: queue.Queue[tuple[int, Envelope] | None] = queue.Queue(settings.queue_size)
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

    def submit(self, envelope: Envelope) -> bool:
        """Queue a record for delivery; return False when it was dropped instead."""
        if self._closed:
            self._counters.add(dropped=1)
            warning_limited("exporter-closed", "heliconetrace dropped a record: it is shut down")
            return False

        number = self._tracker.start()
        try:
            self._queue.put_nowait((number, envelope))
        except queue.Full:
            self._tracker.finish(number)
            self._counters.add(accepted=1, dropped=1)
            warning_limited(
                "queue-full",
                "heliconetrace dropped a record because its queue is full; Helicone is slow or "
                "down, or records come faster than it takes them",
                queue_size=self.settings.queue_size,
                fix="raise HELICONETRACE_QUEUE_SIZE, or check that Helicone answers",
            )
            return False

        self._counters.add(accepted=1)
        if len(self._threads) < self.settings.workers:
            self._start_workers()
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
        for _ in threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

        abandoned = self._queue.qsize() - sum(1 for _ in threads)
        if abandoned > 0:
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
        return self._counters.snapshot(queue_depth=self._queue.qsize())

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

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            number, envelope = item
            try:
                self._deliver(envelope)
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
                    limits=httpx.Limits(
                        max_connections=workers, max_keepalive_connections=workers
                    ),
                    headers={
                        "Authorization": f"Bearer {key.get_secret_value()}",
                        "Content-Type": "application/json",
                        "User-Agent": USER_AGENT,
                    },
                )
            return self._client

    def _deliver(self, envelope: Envelope) -> None:
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
