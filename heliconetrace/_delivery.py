"""One record's way out, on an exporter thread: assemble, trim, post, act on the response.

| response (see `_outcome`)     | action                                                       |
|-------------------------------|--------------------------------------------------------------|
| delivered                     | count; if this process spooled records, make them replayable |
| retry                         | back to the queue behind the closed gate, until              |
|                               | `retry_max_attempts` failures: then spool, or drop           |
| too large                     | trim everything once and send again                          |
| rejected, misconfigured       | count as failed                                              |

Every count and log line goes through here, so the exporter's threads and its shutdown count a
record the same way whichever of them settles it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Final

import httpx

from heliconetrace._assemble import assemble
from heliconetrace._config import Settings
from heliconetrace._diagnostics import internal_error, report_limited
from heliconetrace._endpoint import resolve_endpoint
from heliconetrace._outcome import Outcome, Verdict, classify_response, fix_for
from heliconetrace._queue import Envelope, Job, Queues, Tracker
from heliconetrace._retry import Gatekeeper
from heliconetrace._sink import LocalSink
from heliconetrace._spool import SpooledRecord, SpoolWriter
from heliconetrace._stats import DROP_RETRIES_EXHAUSTED, DROP_TOO_LARGE, Counters
from heliconetrace._transport import Transport
from heliconetrace._trim import max_body_bytes, trim

if TYPE_CHECKING:
    from heliconetrace._span import Span

EVENT_DELIVERY_FAILED: Final = "heliconetrace could not deliver a record to Helicone"

# After a success, the current segment is closed for replay at most this often, so that a
# steady trickle of spooled records does not make one segment file per record.
SEAL_INTERVAL: Final = 5.0


def delivery_error(response: httpx.Response) -> str | None:
    """Return why Helicone did not store a record, or None when it did."""
    outcome = classify_response(response, ())
    return None if outcome.verdict is Verdict.DELIVERED else outcome.error


class Delivery:
    """The per-record steps shared by an exporter's threads."""

    def __init__(
        self,
        settings: Settings,
        queues: Queues,
        tracker: Tracker,
        counters: Counters,
        gatekeeper: Gatekeeper,
        transport: Transport | None,
        spool: SpoolWriter | None,
        request_replay: Callable[[], None],
    ) -> None:
        self.settings = settings
        self._queues = queues
        self._tracker = tracker
        self._counters = counters
        self._gatekeeper = gatekeeper
        self._transport = transport
        self._sink = None if transport is not None else LocalSink(settings.log_file)
        self._spool = spool
        self._request_replay = request_replay
        self._secrets = (
            (settings.api_key.get_secret_value(),) if settings.api_key is not None else ()
        )
        self._spooled_since_seal = False
        self._sealed_at = -SEAL_INTERVAL

    def process(self, job: Job) -> None:
        """Deliver one job a worker took (it is in `in_flight`). Internal errors are logged, and
        raised only under HELICONETRACE_RAISE_INTERNAL_ERRORS."""
        queues = self._queues
        try:
            if job.envelope is None:
                assert job.span is not None
                envelope = self.envelope_for(job.span)
                if envelope is None:
                    if queues.claim(job):
                        self._counters.drop(DROP_TOO_LARGE)
                        self._tracker.finish(job.number)
                    self._gatekeeper.release(job.epoch)
                    return
                job.envelope, job.span = envelope, None

            if self._sink is not None:
                self._sink.write(job.envelope.body)
                if queues.claim(job):
                    self._counters.add(written_locally=1)
                    self._tracker.finish(job.number)
                return

            assert self._transport is not None
            outcome = self._transport.post(job.envelope.url, job.envelope.body)
            if not queues.claim(job):
                # Shutdown spooled or dropped this record while the POST was out.
                self._gatekeeper.release(job.epoch)
                return
            self._settle(job, outcome)
        except Exception as error:
            if queues.claim(job):
                self._counters.add(failed=1, last_error=f"internal error: {error}"[:300])
                self._tracker.finish(job.number)
            self._gatekeeper.release(job.epoch)
            internal_error("exporter.deliver", error)

    def envelope_for(self, span: Span) -> Envelope | None:
        """Assemble a span's record, trimmed to the server's limit; None when it cannot fit."""
        settings = self.settings
        endpoint = resolve_endpoint(settings.base_url, settings.log_url, span.metadata.provider)
        body = assemble(span, endpoint, self._secrets)
        if self._sink is None:
            limit = max_body_bytes(endpoint.server)
            if len(body) > limit:
                original_size = len(body)
                trimmed = trim(body, limit)
                self._report_trimmed(endpoint.url, span.request_id, original_size, trimmed)
                if trimmed is None:
                    return None
                body = trimmed
        return Envelope(
            body=body,
            url=endpoint.url,
            server=endpoint.server,
            provider=span.metadata.provider,
            request_id=span.request_id,
        )

    def _settle(self, job: Job, outcome: Outcome) -> None:
        """Act on Helicone's response to a job this thread has claimed."""
        envelope = job.envelope
        assert envelope is not None
        verdict = outcome.verdict
        retry = verdict is Verdict.RETRY
        delay = self._gatekeeper.report(job.epoch, retry, outcome.retry_after)

        if verdict is Verdict.DELIVERED:
            self._counters.add(delivered=1)
            self._tracker.finish(job.number)
            self._after_success()
            return

        if retry:
            job.attempts += 1
            if job.attempts < self.settings.retry_max_attempts:
                self._counters.add(retried=1, last_error=outcome.error)
                self._report(outcome, envelope, "retrying", retry_in=round(delay, 3))
                self._queues.requeue(job)
            else:
                self._give_up(job, outcome)
            return

        if verdict is Verdict.TOO_LARGE and not job.trimmed:
            smaller = trim(envelope.body, max_body_bytes(envelope.server), everything=True)
            self._report_trimmed(envelope.url, envelope.request_id, len(envelope.body), smaller)
            if smaller is not None:
                job.envelope = replace(envelope, body=smaller)
                job.trimmed = True
                self._queues.requeue(job)
                return

        self._counters.add(failed=1, last_error=outcome.error)
        self._tracker.finish(job.number)
        self._report(outcome, envelope, "rejected")

    def _give_up(self, job: Job, outcome: Outcome) -> None:
        assert job.envelope is not None
        if self._spool is not None:
            if self.spool_envelope(job.envelope):
                self._report(outcome, job.envelope, "spooled", attempts=job.attempts)
        else:
            self._counters.drop(DROP_RETRIES_EXHAUSTED)
            self._report(outcome, job.envelope, "dropped", attempts=job.attempts)
        self._tracker.finish(job.number)

    def _after_success(self) -> None:
        """Make what this process spooled replayable, now that Helicone responds again."""
        if not self._spooled_since_seal or self._spool is None:
            return
        now = time.monotonic()
        if now - self._sealed_at < SEAL_INTERVAL:
            return
        self._sealed_at = now
        self._spooled_since_seal = False
        self._spool.seal()
        self._request_replay()

    # The spool

    def spool_envelope(self, envelope: Envelope) -> bool:
        """Write one record to the spool; count it as spooled, or as dropped and why."""
        return self.spool_envelopes([envelope]) == 1

    def spool_envelopes(self, envelopes: list[Envelope]) -> int:
        """Write records to the spool, counting each as spooled or as dropped and why; return
        the count spooled."""
        assert self._spool is not None
        results = self._spool.append_many(
            [
                SpooledRecord(
                    body=envelope.body,
                    url=envelope.url,
                    server=envelope.server,
                    provider=envelope.provider,
                    request_id=envelope.request_id,
                )
                for envelope in envelopes
            ]
        )
        spooled = results.count(None)
        if spooled:
            self._counters.add(spooled=spooled)
            self._spooled_since_seal = True
        for reason in sorted({reason for reason in results if reason is not None}):
            self._report_spool_failure(reason, results.count(reason))
        return spooled

    def _report_spool_failure(self, reason: str, count: int) -> None:
        assert self._spool is not None
        self._counters.drop(reason, count)
        self._counters.add(last_error=f"spool: {reason}: {self._spool.last_error or ''}")
        report_limited(
            f"spool:{reason}",
            "heliconetrace could not write records to the spool, so they were dropped",
            reason=reason,
            records=count,
            spool_dir=str(self._spool.directory),
            spool_max_bytes=self._spool.max_bytes,
            error=self._spool.last_error,
            fix="free disk space, or raise HELICONETRACE_SPOOL_MAX_BYTES; the spool empties "
            "once Helicone takes records again",
        )

    def spool_spans(self, spans: list[Span]) -> None:
        """Assemble and spool spans that were never sent."""
        envelopes = []
        for span in spans:
            envelope = self.envelope_for(span)
            if envelope is None:
                self._counters.drop(DROP_TOO_LARGE)
            else:
                envelopes.append(envelope)
        if envelopes:
            self.spool_envelopes(envelopes)

    # Diagnostics

    def _report(self, outcome: Outcome, envelope: Envelope, action: str, **fields: object) -> None:
        """Log a failed delivery, at most once per interval for each kind and action."""
        report_limited(
            f"delivery:{outcome.kind}:{action}",
            EVENT_DELIVERY_FAILED,
            outcome=action,
            endpoint=envelope.url,
            request_id=envelope.request_id,
            error=outcome.error,
            fix=fix_for(outcome, envelope.url, envelope.server),
            **fields,
        )

    def _report_trimmed(
        self, url: str, request_id: str, original_size: int, trimmed: bytes | None
    ) -> None:
        if trimmed is None:
            self._counters.add(last_error=f"record of {original_size} bytes too large")
            event = "heliconetrace dropped a record larger than Helicone takes, even trimmed"
        else:
            event = "heliconetrace trimmed a record larger than Helicone takes"
        report_limited(
            "trimmed" if trimmed is not None else "too-large",
            event,
            endpoint=url,
            request_id=request_id,
            original_bytes=original_size,
            trimmed_bytes=len(trimmed) if trimmed is not None else None,
            fix="log smaller requests and responses, or set their bodies with "
            "span.set_request() and span.set_response()",
        )
