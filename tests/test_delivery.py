"""Background delivery to a Helicone receiver on 127.0.0.1: auth, server kinds, failures,
diagnostics, the size guard, counters and self-healing workers."""

from __future__ import annotations

import asyncio
import ctypes
import json
import threading
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

import heliconetrace
from heliconetrace import helicone_logged, helicone_span
from heliconetrace._diagnostics import RateLimiter
from heliconetrace._trim import trim
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
        assert len(helicone.wait_for(1)) == 1

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
        assert len(jawn_receiver.records) == 1

    def test_worker_record_has_no_provider_field(self, helicone: HeliconeReceiver) -> None:
        """The worker picks the provider by path, so the body carries none."""
        chat(REQUEST)
        assert heliconetrace.flush(5.0)
        assert "provider" not in helicone.wait_for(1)[0]
        assert len(helicone.records) == 1

    def test_connection_reused(self, helicone: HeliconeReceiver) -> None:
        """Sequential records travel over kept-alive connections, not one each."""
        heliconetrace.configure(api_key=TEST_KEY, log_url=f"{helicone.url}/oai/v1/log", workers=1)
        for _ in range(5):
            chat(REQUEST)
            assert heliconetrace.flush(5.0)
        ports = {request.client_port for request in helicone.requests}
        assert len(helicone.requests) == 5
        assert len(ports) == 1
        assert len(helicone.records) == 5


class TestFailures:
    def test_error_in_200_retried_then_dropped(self, helicone: HeliconeReceiver) -> None:
        """A 200 whose body is {"error": ...} is a failure: retried, then dropped and logged."""
        heliconetrace.configure(
            api_key=TEST_KEY,
            log_url=f"{helicone.url}/oai/v1/log",
            retry_max_attempts=2,
            retry_max_backoff=0.05,
        )
        helicone.mode = "error-200"
        with capture_logs() as logs:
            chat(REQUEST)
            assert heliconetrace.flush(5.0)
        stats = heliconetrace.stats()
        assert stats.delivered == 0
        assert stats.retried == 1
        assert stats.dropped_by_reason == {"retries_exhausted": 1}
        outcomes = [entry["outcome"] for entry in delivery_warnings(logs)]
        assert outcomes == ["retrying", "dropped"]
        assert "failed to store" in delivery_warnings(logs)[0]["error"]
        assert helicone.records == []

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
        assert "supabaseURL" not in text
        assert warnings[0]["error"] == "HTTP 401"
        assert warnings[0]["outcome"] == "rejected"
        assert len(jawn_receiver.requests) == 1
        assert jawn_receiver.records == []

    def test_401_from_jawn_names_causes(self, jawn_receiver: HeliconeReceiver) -> None:
        """A jawn 401 is explained: key from another instance, reset or deleted; /jawn; https."""
        heliconetrace.configure(api_key="sk-helicone-wrong-key-777777", base_url=jawn_receiver.url)
        with capture_logs() as logs:
            chat(REQUEST)
            assert heliconetrace.flush(5.0)
        fix = delivery_warnings(logs)[0]["fix"]
        for words in (
            "No API key found",
            "another",
            "reset",
            "deleted",
            "/jawn",
            "8585",
            "http://",
        ):
            assert words in fix, words
        assert jawn_receiver.records == []

    def test_401_from_worker_names_region(self, helicone: HeliconeReceiver) -> None:
        """A worker 401 points at the region and instance the key belongs to."""
        helicone.mode = "401"
        with capture_logs() as logs:
            chat(REQUEST)
            assert heliconetrace.flush(5.0)
        assert "eu.api.helicone.ai" in delivery_warnings(logs)[0]["fix"]
        assert helicone.records == []

    def test_404_on_worker_path_explains_jawn(self, helicone: HeliconeReceiver) -> None:
        """A 404 on a worker log path is explained: the server is jawn and takes /v1/trace/custom/log."""
        helicone.mode = "404"
        with capture_logs() as logs:
            chat(REQUEST)
            assert heliconetrace.flush(5.0)
        warning = delivery_warnings(logs)[0]
        assert "/v1/trace/custom/log" in warning["fix"]
        assert "/oai/v1/log" in warning["fix"]
        assert warning["endpoint"] == f"{helicone.url}/oai/v1/log"
        assert helicone.records == []

    def test_custom_path_on_jawn_explained(self, jawn_receiver: HeliconeReceiver) -> None:
        """Posting /custom/v1/log to a real jawn (404) gets the same explanation."""
        heliconetrace.configure(api_key=TEST_KEY, log_url=f"{jawn_receiver.url}/custom/v1/log")
        with capture_logs() as logs:
            chat(REQUEST)
            assert heliconetrace.flush(5.0)
        warning = delivery_warnings(logs)[0]
        assert warning["error"].startswith("HTTP 404")
        assert "jawn" in warning["fix"]
        assert jawn_receiver.records == []

    def test_500_caller_unaffected(self, helicone: HeliconeReceiver) -> None:
        """A server error never reaches the handler's caller."""
        heliconetrace.configure(
            api_key=TEST_KEY,
            log_url=f"{helicone.url}/oai/v1/log",
            retry_max_attempts=2,
            retry_max_backoff=0.05,
        )
        helicone.mode = "500"
        assert chat(REQUEST)["choices"][0]["message"]["content"] == "ok"
        assert heliconetrace.flush(5.0)
        assert heliconetrace.stats().dropped == 1
        assert helicone.records == []

    def test_repeated_failures_rate_limited(self, helicone: HeliconeReceiver) -> None:
        """Many failures of one kind produce one log line, which carries the count."""
        helicone.mode = "401"
        with capture_logs() as logs:
            for _ in range(10):
                chat(REQUEST)
            assert heliconetrace.flush(5.0)
        warnings = delivery_warnings(logs)
        assert len(warnings) == 1
        assert warnings[0]["count"] == 1
        assert heliconetrace.stats().failed == 10
        assert helicone.records == []

    def test_unreachable_server_logged(self) -> None:
        """A closed port is a network failure, logged once per outcome, never raised."""
        heliconetrace.configure(
            api_key=TEST_KEY,
            log_url="http://127.0.0.1:9/oai/v1/log",
            retry_max_attempts=2,
            retry_max_backoff=0.05,
        )
        with capture_logs() as logs:
            chat(REQUEST)
            assert heliconetrace.flush(10.0)
        warnings = delivery_warnings(logs)
        assert [warning["outcome"] for warning in warnings] == ["retrying", "dropped"]
        assert "ConnectError" in warnings[0]["error"]
        assert "HELICONE_BASE_URL" in warnings[0]["fix"]


class TestRateLimiter:
    def test_counts_held_back(self) -> None:
        """Events within the interval are held back and counted on the next line."""
        limiter = RateLimiter(interval=0.2)
        assert limiter.allow("kind") == 0
        assert limiter.allow("kind") is None
        assert limiter.allow("kind") is None
        time.sleep(0.25)
        assert limiter.allow("kind") == 2

    def test_kinds_independent(self) -> None:
        """Each kind has its own interval."""
        limiter = RateLimiter(interval=60.0)
        assert limiter.allow("a") == 0
        assert limiter.allow("b") == 0


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
        assert helicone.records == []

    def test_flush_inside_handler(self, helicone: HeliconeReceiver) -> None:
        """flush() inside a handler waits for the records before it, not for its own span."""
        chat(REQUEST)

        @helicone_logged
        def handler(body: dict[str, Any]) -> dict[str, Any]:
            return {"flushed": heliconetrace.flush(5.0)}

        assert handler(REQUEST) == {"flushed": True}
        assert heliconetrace.flush(5.0)
        assert len(helicone.wait_for(2)) == 2

    def test_full_queue_drops_newest(self, helicone: HeliconeReceiver) -> None:
        """With the queue full and no spool, the newest records are dropped and counted, never
        blocking; the ones queued first are delivered."""
        heliconetrace.configure(
            api_key=TEST_KEY, log_url=f"{helicone.url}/oai/v1/log", queue_size=3, workers=1
        )
        helicone.mode = "slow"
        helicone.delay = 0.5
        started = time.monotonic()
        for index in range(50):
            with helicone_span(user=f"user-{index}"):
                pass
        assert time.monotonic() - started < 1.0
        stats = heliconetrace.stats()
        assert stats.accepted == 50
        assert stats.dropped >= 45
        assert stats.dropped_by_reason == {"queue_full": stats.dropped}
        assert stats.queue_depth <= 3 + 1
        assert heliconetrace.flush(10.0)
        stats = heliconetrace.stats()
        assert stats.delivered + stats.dropped == 50
        users = [
            record["providerRequest"]["meta"]["Helicone-User-Id"] for record in helicone.records
        ]
        assert sorted(users, key=lambda user: int(user.split("-")[1])) == [
            f"user-{index}" for index in range(stats.delivered)
        ]

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


class TestSizeGuard:
    def test_large_stream_text_trimmed(self, helicone: HeliconeReceiver) -> None:
        """A record over the worker's 10 MiB loses its text body, keeps model and usage, and
        lists what went in the Trimmed properties."""
        with helicone_span(model="gpt-4o-mini") as span:
            span.set_request({"model": "gpt-4o-mini", "messages": [], "stream": True})
            span.set_response(
                {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 3, "completion_tokens": 5}},
                text="data: x\n\n" * (11 * 1024 * 1024 // 9),
            )
        assert heliconetrace.flush(20.0)
        record = helicone.wait_for(1)[0]
        meta = record["providerRequest"]["meta"]
        assert meta["Helicone-Property-Trimmed"] == "providerResponse.textBody"
        assert int(meta["Helicone-Property-Trimmed-From-Bytes"]) > 10 * 1024 * 1024
        assert "textBody" not in record["providerResponse"]
        assert record["providerResponse"]["json"]["usage"] == {
            "prompt_tokens": 3,
            "completion_tokens": 5,
        }
        assert "stream" not in record["providerRequest"]["json"]
        assert len(helicone.records) == 1

    def test_jawn_limit_is_larger(self, jawn_receiver: HeliconeReceiver) -> None:
        """The same 11 MiB record goes to jawn (limit 50 MiB) untrimmed."""
        heliconetrace.configure(api_key=TEST_KEY, base_url=jawn_receiver.url)
        with helicone_span(model="gpt-4o-mini") as span:
            span.set_response(text="y" * (11 * 1024 * 1024))
        assert heliconetrace.flush(20.0)
        record = jawn_receiver.wait_for(1)[0]
        assert "Helicone-Property-Trimmed" not in record["providerRequest"]["meta"]
        assert len(record["providerResponse"]["textBody"]) == 11 * 1024 * 1024
        assert len(jawn_receiver.records) == 1

    def test_untrimmable_dropped(self, helicone: HeliconeReceiver) -> None:
        """A record that stays too large after trimming (an 11 MiB model name) is dropped,
        counted, and never sent."""
        with capture_logs() as logs:
            with helicone_span() as span:
                span.set_request({"model": "m" * (11 * 1024 * 1024)})
            assert heliconetrace.flush(20.0)
        assert heliconetrace.stats().dropped_by_reason == {"too_large": 1}
        assert any("even trimmed" in entry["event"] for entry in logs)
        assert helicone.requests == []


def record_with(text: str = "", request_padding: str = "", response_padding: str = "") -> bytes:
    return json.dumps(
        {
            "providerRequest": {
                "url": "custom-model-nopath",
                "json": {"model": "gpt-4o-mini", "messages": [request_padding], "stream": True},
                "meta": {"Helicone-Request-Id": "3c1c9f6e-4c7a-4b8e-9d0e-0c6f1b2a3d4e"},
            },
            "providerResponse": {
                "json": {
                    "model": "gpt-4o-mini",
                    "usage": {"total_tokens": 3},
                    "extra": response_padding,
                },
                "textBody": text,
                "status": 200,
                "headers": {"x-request-id": "abc"},
            },
            "timing": {
                "startTime": {"seconds": 1, "milliseconds": 0},
                "endTime": {"seconds": 1, "milliseconds": 5},
            },
        }
    ).encode()


class TestTrim:
    def test_fitting_record_unchanged(self) -> None:
        """A record within the limit is returned as it is."""
        body = record_with(text="short")
        assert trim(body, 10_000) is body

    def test_text_body_goes_first(self) -> None:
        """When the text body alone makes it too large, only the text body and stream flag go."""
        trimmed = trim(record_with(text="t" * 5000), 2000)
        assert trimmed is not None
        record = json.loads(trimmed)
        assert "textBody" not in record["providerResponse"]
        assert record["providerResponse"]["json"]["extra"] == ""
        assert record["providerRequest"]["json"]["messages"] == [""]
        assert "stream" not in record["providerRequest"]["json"]
        assert (
            record["providerRequest"]["meta"]["Helicone-Property-Trimmed"]
            == "providerResponse.textBody"
        )

    def test_request_trimmed_when_needed(self) -> None:
        """A large request loses its messages but keeps its model, after the response parts."""
        trimmed = trim(record_with(request_padding="r" * 5000), 2000)
        assert trimmed is not None
        record = json.loads(trimmed)
        assert record["providerRequest"]["json"] == {"model": "gpt-4o-mini"}
        assert record["providerResponse"]["json"] == {
            "model": "gpt-4o-mini",
            "usage": {"total_tokens": 3},
        }
        assert record["providerRequest"]["meta"]["Helicone-Property-Trimmed"] == (
            "providerResponse.textBody,providerResponse.json,providerRequest.json"
        )
        assert len(trimmed) <= 2000

    def test_everything_trims_small_record(self) -> None:
        """everything=True applies every step, for a record a server refused as too large."""
        trimmed = trim(record_with(text="x"), 10_000, everything=True)
        assert trimmed is not None
        assert json.loads(trimmed)["providerResponse"]["headers"] == {}

    def test_untrimmable_returns_none(self) -> None:
        """A record whose metadata alone passes the limit cannot be trimmed."""
        assert trim(record_with(), 100) is None


class WorkerKilled(BaseException):
    """Raised inside a worker thread by the self-healing test."""


class TestSelfHealing:
    def test_dead_worker_restarted(
        self, helicone: HeliconeReceiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A worker killed by an unexpected error is replaced by the next record, with one
        warning logged."""
        monkeypatch.delenv("HELICONETRACE_RAISE_INTERNAL_ERRORS")
        heliconetrace.configure(api_key=TEST_KEY, log_url=f"{helicone.url}/oai/v1/log", workers=1)
        chat(REQUEST)
        assert heliconetrace.flush(5.0)
        (worker,) = [
            thread for thread in threading.enumerate() if "heliconetrace-worker" in thread.name
        ]
        assert worker.ident is not None
        with capture_logs() as logs:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(worker.ident), ctypes.py_object(WorkerKilled)
            )
            worker.join(10.0)
            assert not worker.is_alive()
            chat(REQUEST)
            assert heliconetrace.flush(5.0)
        deaths = [entry for entry in logs if "thread stopped" in entry["event"]]
        assert len(deaths) == 1
        assert deaths[0]["error_type"] == "WorkerKilled"
        assert heliconetrace.stats().delivered == 2
        assert len(helicone.wait_for(2)) == 2


class TestAfterShutdown:
    def test_stats_keep_final_counts(self, helicone: HeliconeReceiver) -> None:
        """stats() after shutdown() reports what the stopped exporter did."""
        for _ in range(3):
            chat(REQUEST)
        assert heliconetrace.shutdown(5.0)
        stats = heliconetrace.stats()
        assert stats.accepted == 3
        assert stats.delivered == 3

    def test_lost_records_logged_as_warning(self, helicone: HeliconeReceiver) -> None:
        """The exit line is a warning when records were dropped, so WARNING setups show it."""
        helicone.mode = "hang"
        chat(REQUEST)
        with capture_logs() as logs:
            assert heliconetrace.shutdown(0.5) is False
        stopped = [entry for entry in logs if entry["event"] == "heliconetrace exporter stopped"]
        assert len(stopped) == 1
        assert stopped[0]["log_level"] == "warning"
        assert stopped[0]["dropped"] == 1
        helicone.mode = "ok"


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
