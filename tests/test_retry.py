"""Retries: backoff with full jitter, Retry-After, the endpoint gate, and which responses retry."""

from __future__ import annotations

import datetime
import email.utils
import random
import time
from typing import Any

import httpx
import pytest

import heliconetrace
from heliconetrace import helicone_logged
from heliconetrace._config import resolve
from heliconetrace._lifecycle import EXPORTERS
from heliconetrace._outcome import Verdict, classify_error, classify_response
from heliconetrace._retry import EndpointGate, backoff_delay, parse_retry_after
from tests.conftest import TEST_KEY
from tests.receiver import HeliconeReceiver

REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


@helicone_logged
def chat(body: dict[str, Any]) -> dict[str, Any]:
    return {"choices": [{"message": {"role": "assistant", "content": "ok"}}]}


def send_to(receiver: HeliconeReceiver, path: str = "/oai/v1/log", **settings: Any) -> None:
    """Configure delivery to `receiver` with short backoff, so retries take milliseconds."""
    options: dict[str, Any] = {"retry_max_backoff": 0.05, "shutdown_timeout": 2.0}
    options.update(settings)
    heliconetrace.configure(api_key=TEST_KEY, log_url=f"{receiver.url}{path}", **options)


def request_ids(receiver: HeliconeReceiver) -> list[str]:
    return [
        request.json()["providerRequest"]["meta"]["Helicone-Request-Id"]
        for request in receiver.requests
    ]


class TestBackoff:
    def test_delay_within_ceiling(self) -> None:
        """The n-th delay is uniform in [0, min(max, 0.5 s * 2**(n-1))]."""
        rng = random.Random(7)
        for failures in range(1, 12):
            ceiling = min(30.0, 0.5 * 2 ** (failures - 1))
            delays = [backoff_delay(failures, 30.0, rng) for _ in range(200)]
            assert min(delays) >= 0.0
            assert max(delays) <= ceiling

    def test_delay_jittered(self) -> None:
        """Delays after the same count of failures differ (full jitter)."""
        rng = random.Random(7)
        delays = [backoff_delay(6, 30.0, rng) for _ in range(50)]
        assert max(delays) - min(delays) > 1.0

    def test_huge_failure_count_capped(self) -> None:
        """A long outage never yields a delay above max_backoff."""
        assert backoff_delay(10_000, 2.0) <= 2.0


class TestRetryAfter:
    NOW = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("3", 3.0),
            ("0", 0.0),
            (" 1.5 ", 1.5),
            ("-1", None),
            ("soon", None),
            ("", None),
            (None, None),
        ],
    )
    def test_seconds(self, value: str | None, expected: float | None) -> None:
        """Retry-After in seconds is read; negative or unreadable values are ignored."""
        assert parse_retry_after(value, self.NOW) == expected

    def test_http_date_ahead(self) -> None:
        """An HTTP date ten seconds ahead means ten seconds."""
        header = email.utils.format_datetime(self.NOW + datetime.timedelta(seconds=10), usegmt=True)
        assert parse_retry_after(header, self.NOW) == 10.0

    def test_http_date_past(self) -> None:
        """An HTTP date in the past means retry now."""
        header = email.utils.format_datetime(self.NOW - datetime.timedelta(minutes=5), usegmt=True)
        assert parse_retry_after(header, self.NOW) == 0.0


class TestGate:
    def test_open_until_failure(self) -> None:
        """A new gate lets requests through without waiting."""
        gate = EndpointGate(30.0)
        assert gate.seconds_until_turn(100.0) == 0.0

    def test_failure_closes_then_one_probe(self) -> None:
        """After a failure no request goes until the delay passes, then one probe, and the
        others wait for its result."""
        gate = EndpointGate(30.0)
        epoch = gate.take_turn()
        gate.failed(100.0, epoch, retry_after=2.0)
        assert gate.seconds_until_turn(100.0) == pytest.approx(gate.resume_at - 100.0)
        assert gate.seconds_until_turn(100.0) >= 2.0
        later = gate.resume_at + 0.01
        assert gate.seconds_until_turn(later) == 0.0
        gate.take_turn()
        assert gate.seconds_until_turn(later) is None

    def test_success_opens(self) -> None:
        """A success opens the gate for everybody."""
        gate = EndpointGate(30.0)
        gate.failed(100.0, gate.take_turn(), retry_after=None)
        gate.succeeded()
        assert gate.seconds_until_turn(100.0) == 0.0

    def test_concurrent_failures_count_once(self) -> None:
        """Requests sent together that fail together close the gate as one failure."""
        gate = EndpointGate(30.0)
        epochs = [gate.take_turn() for _ in range(4)]
        for epoch in epochs:
            gate.failed(100.0, epoch, retry_after=None)
        assert gate.failures == 1

    def test_retry_after_capped(self) -> None:
        """A Retry-After longer than max_backoff waits max_backoff."""
        gate = EndpointGate(5.0)
        gate.failed(100.0, gate.take_turn(), retry_after=3600.0)
        assert gate.resume_at <= 105.0


def response(
    status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


class TestClassify:
    @pytest.mark.parametrize(
        ("status", "body", "verdict"),
        [
            (200, b"ok", Verdict.DELIVERED),
            (200, b"", Verdict.DELIVERED),
            (200, b'{"error": "could not store"}', Verdict.RETRY),
            (408, b"", Verdict.RETRY),
            (429, b"", Verdict.RETRY),
            (500, b"", Verdict.RETRY),
            (502, b"bad gateway", Verdict.RETRY),
            (503, b"", Verdict.RETRY),
            (400, b'{"error": "providerRequest is required"}', Verdict.REJECTED),
            (400, b"Payload too large", Verdict.TOO_LARGE),
            (413, b"", Verdict.TOO_LARGE),
            (401, b"", Verdict.MISCONFIGURED),
            (403, b"", Verdict.MISCONFIGURED),
            (404, b"", Verdict.MISCONFIGURED),
            (302, b"", Verdict.MISCONFIGURED),
        ],
    )
    def test_status_verdict(self, status: int, body: bytes, verdict: Verdict) -> None:
        """Each response gets the verdict of the table in heliconetrace._outcome."""
        assert classify_response(response(status, body), ()).verdict is verdict

    def test_401_body_not_kept(self) -> None:
        """The error text of a 401 contains the status only, never the body that echoes the key."""
        body = b'{"error": "No API key found", "authorizationString": "Bearer sk-helicone-abc"}'
        assert classify_response(response(401, body), ()).error == "HTTP 401"

    def test_retry_after_read(self) -> None:
        """A 429's Retry-After header becomes the outcome's delay."""
        outcome = classify_response(response(429, b"", {"Retry-After": "7"}), ())
        assert outcome.retry_after == 7.0

    def test_key_redacted_from_error(self) -> None:
        """The API key never appears in an error text."""
        outcome = classify_response(
            response(500, b"bad key sk-helicone-secret-1234567"), ("sk-helicone-secret-1234567",)
        )
        assert outcome.error is not None
        assert "secret-1234567" not in outcome.error

    @pytest.mark.parametrize(
        ("error", "verdict", "kind"),
        [
            (httpx.ConnectError("[Errno 111] Connection refused"), Verdict.RETRY, "network"),
            (httpx.ReadTimeout("timed out"), Verdict.RETRY, "timeout"),
            (httpx.RemoteProtocolError("Server disconnected"), Verdict.RETRY, "network"),
            (
                httpx.ConnectError(
                    "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)"
                ),
                Verdict.MISCONFIGURED,
                "tls-mismatch",
            ),
            (
                httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'"),
                Verdict.MISCONFIGURED,
                "request-error",
            ),
        ],
    )
    def test_errors(self, error: httpx.HTTPError, verdict: Verdict, kind: str) -> None:
        """Network errors and timeouts retry; a TLS reply from a plain-HTTP port does not."""
        outcome = classify_error(error, ())
        assert outcome.verdict is verdict
        assert outcome.kind == kind


class TestRetried:
    def test_500_twice_then_ok(self, receiver: HeliconeReceiver) -> None:
        """Two server errors, then success: the record arrives once, after two retries."""
        send_to(receiver)
        receiver.queue_modes("500", "500")
        chat(REQUEST)
        assert heliconetrace.flush(10.0)
        stats = heliconetrace.stats()
        assert stats.delivered == 1
        assert stats.retried == 2
        assert len(receiver.requests) == 3
        assert len(set(request_ids(receiver))) == 1
        assert len(receiver.records) == 1

    def test_error_200_retried(self, receiver: HeliconeReceiver) -> None:
        """A 200 whose body is {"error": ...} is retried like a server error."""
        send_to(receiver)
        receiver.queue_modes("error-200")
        chat(REQUEST)
        assert heliconetrace.flush(10.0)
        assert heliconetrace.stats().retried == 1
        assert len(receiver.records) == 1

    def test_connection_reset_retried(self, receiver: HeliconeReceiver) -> None:
        """A connection reset without a response is retried."""
        send_to(receiver)
        receiver.queue_modes("reset", "reset")
        chat(REQUEST)
        assert heliconetrace.flush(10.0)
        assert heliconetrace.stats().delivered == 1
        assert len(receiver.records) == 1

    def test_timeout_retried_same_id(self, receiver: HeliconeReceiver) -> None:
        """A timed-out POST is retried with the same request id; the slow first one may still
        be stored, so Helicone gets the id twice."""
        send_to(receiver, request_timeout=0.3)
        receiver.delay = 1.0
        receiver.queue_modes("slow")
        chat(REQUEST)
        assert heliconetrace.flush(10.0)
        assert heliconetrace.stats().delivered == 1
        records = receiver.wait_for(2, timeout=5.0)
        assert len(records) == 2
        assert len(set(request_ids(receiver))) == 1

    def test_429_honours_retry_after_seconds(self, receiver: HeliconeReceiver) -> None:
        """After a 429 with Retry-After: 1, the next attempt waits about a second."""
        send_to(receiver, retry_max_backoff=5.0)
        receiver.queue_modes("429")
        started = time.monotonic()
        chat(REQUEST)
        assert heliconetrace.flush(10.0)
        assert time.monotonic() - started >= 0.9
        assert len(receiver.records) == 1

    def test_429_honours_retry_after_date(self, receiver: HeliconeReceiver) -> None:
        """A Retry-After given as an HTTP date is honoured too."""
        send_to(receiver, retry_max_backoff=5.0)
        moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
        receiver.retry_after = email.utils.format_datetime(moment, usegmt=True)
        receiver.queue_modes("429")
        started = time.monotonic()
        chat(REQUEST)
        assert heliconetrace.flush(10.0)
        # The date has whole seconds, so the wait is between one and two seconds.
        assert time.monotonic() - started >= 0.9
        assert len(receiver.records) == 1

    def test_down_then_up(self, receiver: HeliconeReceiver) -> None:
        """Records logged while Helicone is down arrive once it is back on the same port."""
        send_to(receiver, retry_max_attempts=50, retry_max_backoff=0.2)
        port = int(receiver.url.rsplit(":", 1)[1])
        receiver.stop()
        for _ in range(5):
            chat(REQUEST)
        time.sleep(0.5)
        assert heliconetrace.stats().retried >= 1
        receiver.start(port)
        assert heliconetrace.flush(10.0)
        assert heliconetrace.stats().delivered == 5
        assert len(receiver.records) == 5

    def test_retries_exhausted_dropped(self, receiver: HeliconeReceiver) -> None:
        """Without a spool, a record that fails retry_max_attempts times is dropped and counted."""
        send_to(receiver, retry_max_attempts=3)
        receiver.mode = "500"
        chat(REQUEST)
        assert heliconetrace.flush(10.0)
        stats = heliconetrace.stats()
        assert len(receiver.requests) == 3
        assert stats.retried == 2
        assert stats.dropped_by_reason == {"retries_exhausted": 1}
        assert receiver.records == []


class TestNotRetried:
    @pytest.mark.parametrize("mode", ["401", "403", "404"])
    def test_configuration_errors(self, receiver: HeliconeReceiver, mode: Any) -> None:
        """401, 403 and 404 are sent once and counted as failed."""
        send_to(receiver)
        receiver.mode = mode
        chat(REQUEST)
        assert heliconetrace.flush(10.0)
        stats = heliconetrace.stats()
        assert len(receiver.requests) == 1
        assert stats.failed == 1
        assert stats.retried == 0
        assert receiver.records == []

    def test_400_sent_once(self, receiver: HeliconeReceiver) -> None:
        """A 400 (here the worker's "invalid path") is sent once and counted as failed."""
        send_to(receiver, path="/v1/not-a-log-path")
        chat(REQUEST)
        assert heliconetrace.flush(10.0)
        assert len(receiver.requests) == 1
        assert receiver.requests[0].status == 400
        assert heliconetrace.stats().failed == 1
        assert receiver.records == []

    def test_413_trimmed_once(self, receiver: HeliconeReceiver) -> None:
        """A 413 is answered by one more attempt with the bodies trimmed, and no retries."""
        send_to(receiver)
        receiver.mode = "413"
        chat(REQUEST)
        assert heliconetrace.flush(10.0)
        requests = receiver.requests
        assert len(requests) == 2
        assert "Helicone-Property-Trimmed" not in requests[0].json()["providerRequest"]["meta"]
        assert "Helicone-Property-Trimmed" in requests[1].json()["providerRequest"]["meta"]
        assert heliconetrace.stats().failed == 1
        assert heliconetrace.stats().retried == 0

    def test_413_then_accepted_trimmed(self, receiver: HeliconeReceiver) -> None:
        """A proxy's 413 followed by success stores the trimmed record, with model kept."""
        send_to(receiver)
        receiver.queue_modes("413")
        chat(REQUEST)
        assert heliconetrace.flush(10.0)
        record = receiver.wait_for(1)[0]
        assert record["providerRequest"]["json"] == {"model": "gpt-4o-mini"}
        assert record["providerRequest"]["meta"]["Helicone-Property-Trimmed"] == (
            "providerResponse.json,providerRequest.json,providerResponse.headers"
        )
        assert len(receiver.records) == 1


class TestGateWithReceiver:
    def test_one_probe_while_failing(self, receiver: HeliconeReceiver) -> None:
        """While Helicone fails, queued records wait behind one probe instead of each failing."""
        send_to(receiver, workers=4, request_timeout=1.0, retry_max_attempts=10)
        receiver.queue_modes("500")
        receiver.mode = "hang"
        chat(REQUEST)
        deadline = time.monotonic() + 5.0
        while len(receiver.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        for _ in range(5):
            chat(REQUEST)
        time.sleep(0.5)
        # The first failure and one hanging probe; four workers without a gate would send 4 more.
        assert len(receiver.requests) == 2
        receiver.mode = "ok"
        assert heliconetrace.flush(15.0)
        assert heliconetrace.stats().delivered == 6
        assert len(receiver.records) == 6

    def test_flush_deadline_during_backoff(self, receiver: HeliconeReceiver) -> None:
        """flush() returns at its deadline while the record waits out a long Retry-After."""
        send_to(receiver, retry_max_backoff=60.0)
        receiver.retry_after = "30"
        receiver.mode = "429"
        chat(REQUEST)
        while heliconetrace.stats().retried == 0:
            time.sleep(0.01)
        started = time.monotonic()
        assert heliconetrace.flush(0.3) is False
        assert time.monotonic() - started < 5.0
        assert receiver.records == []

    def test_shutdown_deadline_during_backoff(self, receiver: HeliconeReceiver) -> None:
        """shutdown() returns by its deadline while the record waits out a 30 s Retry-After,
        and counts the record as dropped at the deadline (no spool)."""
        send_to(receiver, retry_max_backoff=60.0)
        receiver.retry_after = "30"
        receiver.mode = "429"
        chat(REQUEST)
        while heliconetrace.stats().retried == 0:
            time.sleep(0.01)
        exporter = EXPORTERS.peek()
        assert exporter is not None
        started = time.monotonic()
        assert heliconetrace.shutdown(1.0) is False
        # A hang would take the 30 s of Retry-After.
        assert time.monotonic() - started < 10.0
        assert exporter.stats().dropped_by_reason == {"shutdown_deadline": 1}
        assert receiver.records == []


class TestRetrySettings:
    def test_environment_sets_retries(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """HELICONETRACE_RETRY_MAX_ATTEMPTS and HELICONETRACE_RETRY_MAX_BACKOFF set the retries."""
        monkeypatch.setenv("HELICONETRACE_RETRY_MAX_ATTEMPTS", "9")
        monkeypatch.setenv("HELICONETRACE_RETRY_MAX_BACKOFF", "2.5")
        settings = resolve({})
        assert settings.retry_max_attempts == 9
        assert settings.retry_max_backoff == 2.5

    def test_defaults(self) -> None:
        """Five attempts, and at most 30 s between them, by default."""
        settings = resolve({})
        assert settings.retry_max_attempts == 5
        assert settings.retry_max_backoff == 30.0

    def test_zero_attempts_rejected(self) -> None:
        """At least one attempt is required."""
        with pytest.raises(
            heliconetrace.ConfigurationError, match="HELICONETRACE_RETRY_MAX_ATTEMPTS"
        ):
            heliconetrace.configure(retry_max_attempts=0)
