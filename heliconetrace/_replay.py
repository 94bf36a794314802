"""Deliver records from the spool directory, then remove them.

A replay claims one segment at a time (see `_spool`) and posts its records in order, through
the same endpoint gate as fresh records, so it backs off with them while Helicone fails. A
record is never given up for a retryable failure: it is on disk already, so the replay keeps
its place and waits. It stops, keeping the record, at a 401, 403, 404 or other configuration
error, because every record would fail the same way until the settings change. A record that
Helicone rejects for itself (a 400, or too large even after trimming) is removed and counted
in `replay_failed`.

Each record keeps its `Helicone-Request-Id`, which Helicone uses as the id of the stored
request. A record can be delivered twice: by a replay cut short after the POST and before its
progress was written, or when shutdown spooled it while its POST was still out. Both copies
carry the same id.
NOTE: whether Helicone then keeps one row or two was not verified against a live server.

A record spooled for one kind of server and replayed to the other (the settings changed in
between) gets the `provider` field added or removed, as that kind expects.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Final, TextIO

from heliconetrace._config import ENV_API_KEY, ENV_BASE_URL, Settings, resolve
from heliconetrace._diagnostics import logger, report_limited
from heliconetrace._endpoint import resolve_endpoint
from heliconetrace._errors import ConfigurationError
from heliconetrace._metadata import helicone_provider_name
from heliconetrace._outcome import Outcome, Verdict, fix_for
from heliconetrace._retry import Gatekeeper
from heliconetrace._spool import (
    SegmentClaim,
    SpooledRecord,
    claim_segments,
    count_records,
    spool_supported,
)
from heliconetrace._stats import Counters
from heliconetrace._transport import Transport
from heliconetrace._trim import max_body_bytes, trim

EVENT_REPLAY_FAILED: Final = "heliconetrace could not replay a spooled record"


def reshape(record: SpooledRecord, server: str) -> bytes:
    """Return the record's body for a server of kind `server`."""
    if record.server == server:
        return record.body
    body = json.loads(record.body)
    if server == "jawn":
        body["provider"] = helicone_provider_name(record.provider)
    else:
        body.pop("provider", None)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class Replayer:
    """Replay the segments of one spool directory with one exporter's transport and gate."""

    def __init__(
        self,
        settings: Settings,
        directory: Path,
        transport: Transport,
        gatekeeper: Gatekeeper,
        counters: Counters,
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._transport = transport
        self._gatekeeper = gatekeeper
        self._counters = counters
        self._lock = threading.Lock()
        self._claims: set[SegmentClaim] = set()

    def run_pass(self, deadline: float | None = None) -> bool:
        """Replay every segment no other process or thread has locked. Return False when it
        stopped early: at a stop, past the deadline (a time.monotonic() value), or at a
        configuration error."""
        delivered_before = self._counters.value("replayed")
        completed = True
        for claim in claim_segments(self._directory):
            with self._lock:
                self._claims.add(claim)
            try:
                completed = self._replay_segment(claim, deadline)
            finally:
                with self._lock:
                    self._claims.discard(claim)
            if not completed:
                break
        delivered = self._counters.value("replayed") - delivered_before
        if delivered:
            logger.info(
                "heliconetrace delivered records from the spool",
                count=delivered,
                spool_dir=str(self._directory),
                complete=completed,
            )
        return completed

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited descriptors of claimed segments, which would
        otherwise keep the parent's locks alive as long as the child runs."""
        self._lock = threading.Lock()
        for claim in list(self._claims):
            claim.release()
        self._claims.clear()

    def _replay_segment(self, claim: SegmentClaim, deadline: float | None) -> bool:
        try:
            if not claim.has_header():
                report_limited(
                    f"spool-foreign:{claim.path}",
                    "heliconetrace left a file in the spool directory alone: it is not a "
                    "spool segment",
                    path=str(claim.path),
                    fix="move files that heliconetrace did not write out of the spool directory",
                )
                claim.release()
                return True
            for offset, record in claim.records():
                if record is None:
                    self._counters.add(replay_failed=1)
                    report_limited(
                        "spool-unreadable",
                        EVENT_REPLAY_FAILED,
                        path=str(claim.path),
                        error="the record was written by another version of heliconetrace",
                        fix="replay it with the version that wrote it",
                    )
                elif not self._replay_record(record, deadline):
                    claim.release()
                    return False
                claim.settle(offset)
        except OSError as error:
            report_limited(
                "spool-read-error",
                EVENT_REPLAY_FAILED,
                path=str(claim.path),
                error=f"{type(error).__name__}: {error}",
                fix="check the spool directory's permissions and free space",
            )
            claim.release()
            return True
        claim.finish()
        return True

    def _replay_record(self, record: SpooledRecord, deadline: float | None) -> bool:
        """Deliver one record, retrying while it fails for a passing reason; return False to
        stop the replay with the record kept."""
        settings = self._settings
        endpoint = resolve_endpoint(settings.base_url, settings.log_url, record.provider)
        body = reshape(record, endpoint.server)
        trimmed = False
        while True:
            epoch = self._gatekeeper.wait_turn(deadline)
            if epoch is None:
                return False
            outcome = self._transport.post(endpoint.url, body)
            verdict = outcome.verdict
            retry = verdict is Verdict.RETRY
            delay = self._gatekeeper.report(epoch, retry, outcome.retry_after)
            if verdict is Verdict.DELIVERED:
                self._counters.add(replayed=1)
                return True
            if retry:
                self._counters.add(retried=1, last_error=outcome.error)
                self._report(outcome, endpoint.url, endpoint.server, record, retry_in=delay)
                continue
            if verdict is Verdict.TOO_LARGE and not trimmed:
                smaller = trim(body, max_body_bytes(endpoint.server), everything=True)
                if smaller is not None:
                    body, trimmed = smaller, True
                    continue
            self._report(outcome, endpoint.url, endpoint.server, record)
            if verdict is Verdict.MISCONFIGURED:
                self._counters.add(last_error=outcome.error)
                return False
            self._counters.add(replay_failed=1, last_error=outcome.error)
            return True

    @staticmethod
    def _report(
        outcome: Outcome,
        url: str,
        server: str,
        record: SpooledRecord,
        retry_in: float | None = None,
    ) -> None:
        fields: dict[str, object] = {}
        if retry_in is not None:
            fields["retry_in"] = round(retry_in, 3)
        report_limited(
            f"replay:{outcome.kind}",
            EVENT_REPLAY_FAILED,
            endpoint=url,
            request_id=record.request_id,
            error=outcome.error,
            kept_in_spool=outcome.verdict in (Verdict.RETRY, Verdict.MISCONFIGURED),
            fix=fix_for(outcome, url, server),
            **fields,
        )


def replay_command(directory: Path, timeout: float, output: TextIO) -> int:
    """Run `python -m heliconetrace replay DIR`: deliver the spool's records with this
    process's settings, for at most about `timeout` seconds. Exit status 0 when the spool is
    empty afterwards, 1 when records are left, 2 when the settings do not allow a replay."""
    try:
        settings = resolve({})
    except ConfigurationError as error:
        print(f"heliconetrace replay: {error}", file=sys.stderr)
        return 2
    if settings.api_key is None:
        print(
            f"heliconetrace replay: no Helicone API key; set {ENV_API_KEY} (and "
            f"{ENV_BASE_URL} for a self-hosted Helicone) to deliver the spooled records.",
            file=sys.stderr,
        )
        return 2
    if not directory.is_dir():
        print(f"heliconetrace replay: no spool directory at {directory}.", file=sys.stderr)
        return 2
    if not spool_supported():
        print(
            "heliconetrace replay: the spool needs flock(2), which this platform lacks.",
            file=sys.stderr,
        )
        return 2

    transport = Transport(settings, connections=1)
    gatekeeper = Gatekeeper(threading.Condition(threading.RLock()), settings.retry_max_backoff)
    counters = Counters()
    replayer = Replayer(settings, directory, transport, gatekeeper, counters)
    try:
        replayer.run_pass(time.monotonic() + max(0.0, timeout))
    finally:
        transport.close()

    stats = counters.snapshot(queue_depth=0, queued_total=0)
    remaining = count_records(directory)
    print(
        f"{stats.replayed} records delivered, {stats.replay_failed} rejected by Helicone and "
        f"removed, {remaining} left in {directory}",
        file=output,
    )
    if remaining and stats.last_error:
        print(f"last error: {stats.last_error}", file=output)
    return 0 if remaining == 0 else 1
