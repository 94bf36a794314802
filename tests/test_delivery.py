"""Background delivery to a Helicone receiver on 127.0.0.1: auth, server kinds, failures."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from structlog.testing import capture_logs

import heliconetrace
from heliconetrace import helicone_logged, helicone_span
from tests.conftest import TEST_KEY
from tests.helicone_schema import assert_valid_record
from tests.receiver import HeliconeReceiver

REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


@helicone_logged
def chat(body: dict[str, Any]) -> dict[str, Any]:
    return {"choices": [{"message": {"role": "assistant", "content": "ok"}}]}


def delivery_warnings(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        entry
        for entry in logs
        if entry["event"] == "heliconetrace could not deliver a record to Helicone"
    ]


class TestAuthAndPaths:
    def test_bearer_key_sent(self, helicone: HeliconeReceiver) -> None:
        """Every POST carries Authorization: Bearer <key> and a JSON body."""
        chat(REQUEST)
        assert heliconetrace.flush(5.0)
        request = helicone.requests[0]
        assert request.headers["authorization"] == f"Bearer {TEST_KEY}"
        assert request.headers["content-type"] == "application/json"
        assert request.path == "/oai/v1/log"

    def test_jawn_gets_trace_path_and_provider(self, jawn_receiver: HeliconeReceiver) -> None:
        """A base URL that is not the cloud worker posts to /v1/trace/custom/log with provider."""
        heliconetrace.configure(api_key=TEST_KEY, base_url=jawn_receiver.url)
        with helicone_span(provider="anthropic", model="claude-3-haiku-20240307") as span:
            span.set_request({"model": "claude-3-haiku-20240307", "max_tokens": 10})
        assert heliconetrace.flush(5.0)
        record = jawn_receiver.wait_for(1)[0]
        assert_valid_record(record)
        assert jawn_receiver.requests[0].path == "/v1/trace/custom/log"
        assert record["provider"] == "ANTHROPIC"

    def test_worker_record_has_no_provider_field(self, helicone: HeliconeReceiver) -> None:
        """The worker picks the provider by path, so the body carries none."""
        chat(REQUEST)
        assert heliconetrace.flush(5.0)
        assert "provider" not in helicone.wait_for(1)[0]

    def test_connection_reused(self, helicone: HeliconeReceiver) -> None:
        """Sequential records travel over kept-alive connections, not one each."""
        heliconetrace.configure(api_key=TEST_KEY, log_url=f"{helicone.url}/oai/v1/log", workers=1)
        for _ in range(5):
            chat(REQUEST)
            assert heliconetrace.flush(5.0)
        ports = {request.client_port for request in helicone.requests}
        assert len(helicone.requests) == 5
        assert len(ports) == 1


class TestFailures:
    def test_error_in_200_counts_as_failure(self, helicone: HeliconeReceiver) -> None:
        """A 200 whose body is {"error": ...} is a failure, logged with the error."""
        helicone.mode = "error-200"
        with capture_logs() as logs:
            chat(REQUEST)
            assert heliconetrace.flush(5.0)
        stats = heliconetrace.stats()
        assert stats.delivered == 0
        assert stats.failed == 1
        warnings = delivery_warnings(logs)
        assert len(warnings) == 1
        assert "error" in warnings[0]

    def test_401_logged_without_body_or_key(self, jawn_receiver: HeliconeReceiver) -> None:
        """A rejected key is explained, and neither the key nor the echoing body is logged."""
        heliconetrace.configure(api_key="sk-helicone-wrong-key-777777", base_url=jawn_receiver.url)
        with capture_logs() as logs:
            chat(REQUEST)
            assert heliconetrace.flush(5.0)
        warnings = delivery_warnings(logs)
        assert len(warnings) == 1
        text = json.dumps(logs)
        assert "wrong-key-777777" not in text
        assert "authorizationString" not in text
        assert "No API key found" not in text
        assert warnings[0]["error"] == "HTTP 401"
        assert "region" in warnings[0]["fix"]

    def test_404_explains_jawn_path(self, helicone: HeliconeReceiver) -> None:
        """A 404 points at the jawn log path."""
        helicone.mode = "404"
        with capture_logs() as logs:
            chat(REQUEST)
            assert heliconetrace.flush(5.0)
        warnings = delivery_warnings(logs)
        assert "/v1/trace/custom/log" in warnings[0]["fix"]

    def test_500_counted_and_caller_unaffected(self, helicone: HeliconeReceiver) -> None:
        """A server error never reaches the handler's caller."""
        helicone.mode = "500"
        assert chat(REQUEST)["choices"][0]["message"]["content"] == "ok"
        assert heliconetrace.flush(5.0)
        assert heliconetrace.stats().failed == 1

    def test_repeated_failures_rate_limited(self, helicone: HeliconeReceiver) -> None:
        """Many failures of one kind produce one log line."""
        helicone.mode = "500"
        with capture_logs() as logs:
            for _ in range(10):
                chat(REQUEST)
            assert heliconetrace.flush(5.0)
        assert len(delivery_warnings(logs)) == 1
        assert heliconetrace.stats().failed == 10

    def test_unreachable_server_logged(self) -> None:
        """A closed port is a network failure, logged once, never raised."""
        heliconetrace.configure(api_key=TEST_KEY, log_url="http://127.0.0.1:9/oai/v1/log")
        with capture_logs() as logs:
            chat(REQUEST)
            assert heliconetrace.flush(10.0)
        warnings = delivery_warnings(logs)
        assert len(warnings) == 1
        assert "ConnectError" in warnings[0]["error"]


class TestNonBlocking:
    def test_slow_receiver_does_not_slow_handler(self, helicone: HeliconeReceiver) -> None:
        """With Helicone taking two seconds per request, the handler returns at once."""
        helicone.mode = "slow"
        helicone.delay = 2.0
        started = time.monotonic()
        for _ in range(5):
            chat(REQUEST)
        elapsed = time.monotonic() - started
        assert elapsed < 1.0
        assert heliconetrace.flush(10.0)
        assert len(helicone.wait_for(5)) == 5

    def test_flush_returns_false_at_deadline(self, helicone: HeliconeReceiver) -> None:
        """flush() gives up at its deadline while a record is still in flight."""
        helicone.mode = "hang"
        chat(REQUEST)
        started = time.monotonic()
        assert heliconetrace.flush(0.3) is False
        assert time.monotonic() - started < 2.0
        helicone.mode = "ok"

    def test_full_queue_drops_and_counts(self, helicone: HeliconeReceiver) -> None:
        """With the queue full, further records are dropped and counted, never blocking."""
        heliconetrace.configure(
            api_key=TEST_KEY,
            log_url=f"{helicone.url}/oai/v1/log",
            queue_size=3,
            workers=1,
            shutdown_timeout=0.5,
        )
        helicone.mode = "hang"
        started = time.monotonic()
        for _ in range(50):
            chat(REQUEST)
        assert time.monotonic() - started < 1.0
        stats = heliconetrace.stats()
        assert stats.accepted == 50
        assert stats.dropped >= 46
        assert stats.queue_depth <= 3
        helicone.mode = "ok"

    def test_async_handlers_deliver(self, helicone: HeliconeReceiver) -> None:
        """Records from async code are delivered by the background threads."""

        @helicone_logged
        async def handler(body: dict[str, Any]) -> dict[str, Any]:
            return {"ok": True}

        async def run() -> None:
            await asyncio.gather(*(handler(REQUEST) for _ in range(10)))

        asyncio.run(run())
        assert heliconetrace.flush(5.0)
        assert len(helicone.wait_for(10)) == 10


class TestDisabled:
    def test_disabled_sends_nothing(self, helicone: HeliconeReceiver) -> None:
        """With enabled=False the handler runs and nothing is sent or written."""
        heliconetrace.configure(
            api_key=TEST_KEY, log_url=f"{helicone.url}/oai/v1/log", enabled=False
        )
        assert chat(REQUEST)["choices"][0]["message"]["content"] == "ok"
        with helicone_span(name="off"):
            pass
        assert heliconetrace.flush(1.0)
        time.sleep(0.2)
        assert helicone.requests == []
        assert heliconetrace.stats().accepted == 0
