"""Decorated generators behave like the undecorated ones, and log one record each."""

from __future__ import annotations

import asyncio
import gc
import itertools
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

import heliconetrace
from heliconetrace import current_span, helicone_logged
from tests.helicone_schema import assert_valid_record
from tests.receiver import HeliconeReceiver

REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def records(helicone: HeliconeReceiver, count: int) -> list[dict[str, Any]]:
    """Return exactly `count` records, after waiting briefly for any extra one."""
    assert heliconetrace.flush(5.0)
    received = helicone.wait_for(count)
    assert heliconetrace.flush(1.0)
    received = helicone.records
    assert len(received) == count
    for record in received:
        assert_valid_record(record)
    return received


def content(record: dict[str, Any]) -> str:
    return str(record["providerResponse"]["json"]["choices"][0]["message"]["content"])


@pytest.fixture
def unraisable() -> Iterator[list[Any]]:
    """Collect exceptions Python could not raise (from finalizers and garbage collection)."""
    seen: list[Any] = []
    previous = sys.unraisablehook
    sys.unraisablehook = seen.append
    yield seen
    sys.unraisablehook = previous


class TestSyncProtocol:
    def test_send_reaches_body(self, helicone: HeliconeReceiver) -> None:
        """Values sent into the wrapper reach the handler's generator."""

        @helicone_logged
        def doubler(body: dict[str, Any]) -> Iterator[Any]:
            received = yield "ready"
            while received is not None:
                received = yield received * 2

        generator = doubler(REQUEST)
        assert next(generator) == "ready"
        assert generator.send(5) == 10
        assert generator.send(7) == 14
        with pytest.raises(StopIteration):
            generator.send(None)
        assert len(records(helicone, 1)) == 1

    def test_return_value_passes_through(self) -> None:
        """A generator's return value reaches the caller through StopIteration."""

        @helicone_logged
        def producer() -> Iterator[str]:
            yield "a"
            return "done"

        def delegate() -> Iterator[str]:
            result = yield from producer()
            yield result

        assert list(delegate()) == ["a", "done"]

    def test_throw_handled_by_body(self, helicone: HeliconeReceiver) -> None:
        """An exception thrown in and handled by the body lets it go on."""

        @helicone_logged(model="m")
        def resilient() -> Iterator[str]:
            try:
                yield "first"
            except KeyError:
                yield "recovered"
            yield "last"

        generator = resilient()
        assert next(generator) == "first"
        assert generator.throw(KeyError("x")) == "recovered"
        assert list(generator) == ["last"]
        record = records(helicone, 1)[0]
        assert record["providerResponse"]["status"] == 200
        assert content(record) == "firstrecoveredlast"

    def test_throw_unhandled_fails_record(self, helicone: HeliconeReceiver) -> None:
        """An exception thrown in and not handled propagates and fails the record."""

        @helicone_logged(model="m")
        def fragile() -> Iterator[str]:
            yield "only"
            yield "never"

        generator = fragile()
        next(generator)
        error = ValueError("consumer gave up")
        with pytest.raises(ValueError) as caught:
            generator.throw(error)
        assert caught.value is error
        record = records(helicone, 1)[0]
        assert record["providerResponse"]["status"] == 500
        assert content(record) == "only"
        assert record["providerResponse"]["json"]["error"]["message"] == "consumer gave up"

    def test_close_ends_record_as_closed(self, helicone: HeliconeReceiver) -> None:
        """close() ends the record with status -3 and keeps what streamed before."""
        closed = []

        @helicone_logged(model="m")
        def stream() -> Iterator[str]:
            try:
                yield "a"
                yield "b"
                yield "c"
            finally:
                closed.append(True)

        generator = stream()
        assert next(generator) == "a"
        generator.close()
        assert closed == [True]
        record = records(helicone, 1)[0]
        assert record["providerResponse"]["status"] == -3
        assert record["providerRequest"]["meta"]["Helicone-Property-End-Reason"] == "closed"
        assert content(record) == "a"

    def test_break_and_islice_close_early(self, helicone: HeliconeReceiver) -> None:
        """break and itertools.islice end the record once each, with the partial output."""

        @helicone_logged(model="m")
        def stream() -> Iterator[str]:
            yield from ["x", "y", "z"]

        for item in stream():
            if item == "y":
                break
        assert list(itertools.islice(stream(), 1)) == ["x"]
        gc.collect()
        received = records(helicone, 2)
        assert sorted(content(record) for record in received) == ["x", "xy"]
        assert {record["providerResponse"]["status"] for record in received} == {-3}

    def test_garbage_collected_generator_logged(
        self, helicone: HeliconeReceiver, unraisable: list[Any]
    ) -> None:
        """A generator dropped unfinished is logged once, without an unraisable error."""

        @helicone_logged(model="m")
        def stream() -> Iterator[str]:
            yield "partial"
            yield "never"

        generator = stream()
        next(generator)
        del generator
        gc.collect()
        record = records(helicone, 1)[0]
        assert record["providerResponse"]["status"] == -3
        assert content(record) == "partial"
        assert unraisable == []

    def test_exception_in_body_keeps_partial_output(self, helicone: HeliconeReceiver) -> None:
        """An exception raised by the body fails the record and keeps what streamed."""

        @helicone_logged(model="m")
        def stream() -> Iterator[str]:
            yield "before "
            raise RuntimeError("provider dropped the connection")

        with pytest.raises(RuntimeError):
            list(stream())
        record = records(helicone, 1)[0]
        assert record["providerResponse"]["status"] == 500
        assert content(record) == "before "
        assert "provider dropped" in record["providerResponse"]["json"]["error"]["message"]

    def test_closed_in_another_thread(
        self, helicone: HeliconeReceiver, unraisable: list[Any]
    ) -> None:
        """Advanced in one thread and closed in another, the generator logs once, cleanly."""

        @helicone_logged(model="m")
        def stream() -> Iterator[str]:
            while True:
                span = current_span()
                assert span is not None
                yield "tick "

        generator = stream()
        errors: list[BaseException] = []

        def advance() -> None:
            try:
                next(generator)
                next(generator)
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=advance)
        thread.start()
        thread.join(5)
        with capture_logs() as logs:
            generator.close()
        assert errors == []
        assert [entry for entry in logs if entry["log_level"] == "error"] == []
        assert content(records(helicone, 1)[0]) == "tick tick "
        assert unraisable == []

    def test_nested_generators_finalized_out_of_order(
        self, helicone: HeliconeReceiver, unraisable: list[Any]
    ) -> None:
        """An outer generator closed before the inner one it started gives no error."""

        @helicone_logged(name="inner", model="m")
        def inner() -> Iterator[str]:
            yield from ["i1", "i2", "i3"]

        inner_generators: list[Iterator[str]] = []

        @helicone_logged(name="outer", model="m")
        def outer() -> Iterator[str]:
            generator = inner()
            inner_generators.append(generator)
            yield next(generator)
            yield "o2"

        outer_generator = outer()
        assert next(outer_generator) == "i1"
        outer_generator.close()
        inner_generators[0].close()
        received = records(helicone, 2)
        names = sorted(
            r["providerRequest"]["meta"]["Helicone-Property-Span-Name"] for r in received
        )
        assert names == ["inner", "outer"]
        assert unraisable == []


class TestAsyncProtocol:
    def test_asend_athrow_aclose_pass_through(self, helicone: HeliconeReceiver) -> None:
        """asend, athrow and aclose reach the body with the same values and exceptions."""
        events: list[str] = []

        @helicone_logged(model="m")
        async def echo() -> AsyncIterator[Any]:
            received = yield "ready"
            try:
                while True:
                    received = yield f"got {received}"
            except KeyError:
                events.append("caught")
                yield "after throw"
            finally:
                events.append("closed")

        async def run() -> None:
            generator = echo()
            assert await generator.asend(None) == "ready"
            assert await generator.asend(1) == "got 1"
            assert await generator.athrow(KeyError("k")) == "after throw"
            await generator.aclose()

        asyncio.run(run())
        assert events == ["caught", "closed"]
        record = records(helicone, 1)[0]
        assert record["providerResponse"]["status"] == -3

    def test_cancellation_ends_record(self, helicone: HeliconeReceiver) -> None:
        """A task cancelled while the body awaits logs status -3, reason cancelled."""
        started = asyncio.Event()

        @helicone_logged(model="m")
        async def slow() -> AsyncIterator[str]:
            yield "first "
            started.set()
            await asyncio.sleep(30)
            yield "never"

        async def consume() -> None:
            async for _ in slow():
                pass

        async def run() -> None:
            task = asyncio.create_task(consume())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(run())
        record = records(helicone, 1)[0]
        assert record["providerResponse"]["status"] == -3
        assert record["providerRequest"]["meta"]["Helicone-Property-End-Reason"] == "cancelled"
        assert content(record) == "first "

    @pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is new in 3.11")
    def test_timeout_inside_body_fires(self, helicone: HeliconeReceiver) -> None:
        """asyncio.timeout inside the body fires, because no task is made per item."""

        @helicone_logged(model="m")
        async def stream() -> AsyncIterator[str]:
            yield "a"
            try:
                async with asyncio.timeout(0.05):  # type: ignore[attr-defined]
                    await asyncio.sleep(10)
            except TimeoutError:
                yield "timed out"

        async def run() -> list[str]:
            return [item async for item in stream()]

        assert asyncio.run(run()) == ["a", "timed out"]
        assert content(records(helicone, 1)[0]) == "atimed out"

    def test_loop_finalizer_closes_abandoned(
        self, helicone: HeliconeReceiver, unraisable: list[Any]
    ) -> None:
        """An async generator left unfinished is closed by the loop's finalizer, cleanly."""
        loop_errors: list[dict[str, Any]] = []

        @helicone_logged(model="m")
        async def stream() -> AsyncIterator[str]:
            yield "one "
            yield "two "

        async def run() -> None:
            asyncio.get_running_loop().set_exception_handler(
                lambda loop, context: loop_errors.append(context)
            )
            generator = stream()
            assert await generator.__anext__() == "one "
            del generator
            gc.collect()
            await asyncio.sleep(0.05)

        asyncio.run(run())
        record = records(helicone, 1)[0]
        assert record["providerResponse"]["status"] == -3
        assert content(record) == "one "
        assert loop_errors == []
        assert unraisable == []

    def test_advanced_and_closed_in_different_tasks(
        self, helicone: HeliconeReceiver, unraisable: list[Any]
    ) -> None:
        """A generator advanced in one task and closed in another gives no error."""

        @helicone_logged(model="m")
        async def stream() -> AsyncIterator[str]:
            while True:
                yield "x"

        async def run() -> None:
            generator = stream()

            async def advance() -> None:
                await generator.__anext__()

            await asyncio.create_task(advance())
            await asyncio.create_task(generator.aclose())

        asyncio.run(run())
        assert content(records(helicone, 1)[0]) == "x"
        assert unraisable == []


class TestFixtureStreams:
    @pytest.mark.parametrize(
        ("fixture", "expected_start"),
        [
            ("openai-chat-stream-content-usage.sse", "I'm unable to provide real-time weather"),
            ("groq-chat-stream.sse", "A joke about OpenTelemetry!"),
            ("deepseek-chat-stream-reasoning.sse", "Hello there! 😊"),
        ],
    )
    def test_raw_sse_bytes_reassembled(
        self, helicone: HeliconeReceiver, fixture: str, expected_start: str
    ) -> None:
        """A handler relaying raw SSE bytes logs the reassembled body and the SSE text."""
        from tests.test_stream_reassembly import FIXTURES  # the copied provider recordings

        raw = (FIXTURES / fixture).read_bytes()

        @helicone_logged(provider="openai")
        def relay(body: dict[str, Any]) -> Iterator[bytes]:
            for start in range(0, len(raw), 97):
                yield raw[start : start + 97]

        assert b"".join(relay({"model": "x", "stream": True})) == raw
        record = records(helicone, 1)[0]
        response = record["providerResponse"]
        assert response["status"] == 200
        assert content(record).startswith(expected_start)
        assert response["textBody"] == raw.decode()
        assert record["providerRequest"]["json"]["stream"] is True
        assert record["timing"]["timeToFirstToken"] >= 0

    def test_error_event_fails_record(self, helicone: HeliconeReceiver) -> None:
        """An error event inside a relayed stream fails the record and keeps the output."""
        from tests.test_stream_reassembly import FIXTURES

        raw = (FIXTURES / "groq-chat-stream-error-event.sse").read_bytes()

        @helicone_logged(provider="groq")
        def relay(body: dict[str, Any]) -> Iterator[bytes]:
            yield raw

        list(relay({"model": "openai/gpt-oss-120b"}))
        record = records(helicone, 1)[0]
        assert record["providerResponse"]["status"] == 400
        assert record["providerResponse"]["json"]["error"]["code"] == "tool_use_failed"

    def test_early_close_not_taken_for_missing_usage(self, helicone: HeliconeReceiver) -> None:
        """A stream closed before its usage chunk warns nothing; a complete one still warns."""
        from tests.test_stream_reassembly import FIXTURES

        raw = (FIXTURES / "openai-chat-stream-content.sse").read_bytes()
        lines = raw.split(b"\n\n")

        @helicone_logged
        def relay(body: dict[str, Any]) -> Iterator[bytes]:
            for line in lines:
                yield line + b"\n\n"

        body = {"model": "gpt-early-close", "stream": True}
        with capture_logs() as early_logs:
            for _ in relay(body):
                break
            assert heliconetrace.flush(5.0)
        with capture_logs() as complete_logs:
            list(relay(body))
            assert heliconetrace.flush(5.0)
        assert [e for e in early_logs if "without token usage" in e["event"]] == []
        assert len([e for e in complete_logs if "without token usage" in e["event"]]) == 1
        statuses = sorted(record["providerResponse"]["status"] for record in records(helicone, 2))
        assert statuses == [-3, 200]

    def test_missing_usage_warned_once_per_model(self, helicone: HeliconeReceiver) -> None:
        """A stream without usage warns once per model and leaves the request unchanged."""
        from tests.test_stream_reassembly import FIXTURES

        raw = (FIXTURES / "openai-chat-stream-content.sse").read_bytes()

        @helicone_logged
        def relay(body: dict[str, Any]) -> Iterator[bytes]:
            yield raw

        with capture_logs() as logs:
            for _ in range(3):
                list(relay({"model": "gpt-3.5-turbo-no-usage", "stream": True}))
            assert heliconetrace.flush(5.0)
        warnings = [entry for entry in logs if "without token usage" in entry["event"]]
        assert len(warnings) == 1
        assert warnings[0]["model"] == "gpt-3.5-turbo-no-usage"
        for record in records(helicone, 3):
            assert "stream_options" not in record["providerRequest"]["json"]
