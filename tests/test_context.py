"""Metadata scopes: nesting, inheritance, bind(), and isolation between requests."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import heliconetrace
from heliconetrace import bind, current_span, helicone_logged, helicone_span
from tests.helicone_schema import assert_valid_record
from tests.receiver import HeliconeReceiver


def meta_by_name(helicone: HeliconeReceiver, count: int) -> dict[str, dict[str, str]]:
    assert heliconetrace.flush(5.0)
    records = helicone.wait_for(count)
    assert len(records) == count
    result: dict[str, dict[str, str]] = {}
    for record in records:
        assert_valid_record(record)
        meta = record["providerRequest"]["meta"]
        result[meta["Helicone-Property-Span-Name"]] = meta
    return result


class TestMetaKeys:
    def test_every_option_reaches_its_meta_key(self, helicone: HeliconeReceiver) -> None:
        """Each option becomes the Helicone meta key that the docs name."""
        with helicone_span(
            model="gpt-4o",
            provider="openai",
            user="user-7",
            session_id="session-1",
            session_path="/chat/answer",
            session_name="Support chat",
            properties={"App-Version": "1.2", "Retries": 2, "Beta": True},
            virtual_key="vk-openai-prod",
            name="answer",
        ) as span:
            span.set_request({"model": "gpt-4o", "messages": []})
        meta = meta_by_name(helicone, 1)["answer"]
        assert meta["Helicone-Request-Id"] == span.request_id
        assert meta["Helicone-User-Id"] == "user-7"
        assert meta["Helicone-Session-Id"] == "session-1"
        assert meta["Helicone-Session-Path"] == "/chat/answer"
        assert meta["Helicone-Session-Name"] == "Support chat"
        assert meta["Helicone-Property-App-Version"] == "1.2"
        assert meta["Helicone-Property-Retries"] == "2"
        assert meta["Helicone-Property-Beta"] == "true"
        assert meta["Helicone-Property-Virtual-Key"] == "vk-openai-prod"
        assert "Helicone-Model-Override" not in meta

    def test_model_fills_request_without_model(self, helicone: HeliconeReceiver) -> None:
        """The model option lands in providerRequest.json.model when the request has none."""
        with helicone_span(model="gpt-4o", name="no-model") as span:
            span.set_request({"messages": []})
        assert heliconetrace.flush(5.0)
        record = helicone.wait_for(1)[0]
        assert record["providerRequest"]["json"]["model"] == "gpt-4o"

    def test_different_model_becomes_override(self, helicone: HeliconeReceiver) -> None:
        """A request naming another model gets Helicone-Model-Override and keeps its body."""
        with helicone_span(model="gpt-4o", name="override") as span:
            span.set_request({"model": "my-deployment", "messages": []})
        meta = meta_by_name(helicone, 1)["override"]
        assert meta["Helicone-Model-Override"] == "gpt-4o"
        assert helicone.records[0]["providerRequest"]["json"]["model"] == "my-deployment"

    def test_request_id_uuid_or_chosen(self, helicone: HeliconeReceiver) -> None:
        """A span's request id is a UUID; a given one is used as it is."""
        given = "0b5f4e5e-8d0c-4b7f-9a39-4f0f3c2a1d11"
        with helicone_span(name="given", request_id=given) as span:
            assert span.request_id == given
        meta = meta_by_name(helicone, 1)["given"]
        assert meta["Helicone-Request-Id"] == given

    def test_non_ascii_value_percent_encoded(self, helicone: HeliconeReceiver) -> None:
        """Values outside ASCII are percent-encoded so they survive as HTTP header values."""
        with helicone_span(name="encoded", user="Zoë 日本"):
            pass
        meta = meta_by_name(helicone, 1)["encoded"]
        assert meta["Helicone-User-Id"] == "Zo%C3%AB %E6%97%A5%E6%9C%AC"


class TestNesting:
    def test_inner_span_inherits_and_overrides(self, helicone: HeliconeReceiver) -> None:
        """An inner span inherits outer values, and its own values win."""
        with (
            helicone_span(name="outer", user="alice", properties={"Team": "a", "Tier": "1"}),
            helicone_span(name="inner", properties={"Tier": "2"}, session_id="s-9"),
        ):
            pass
        metas = meta_by_name(helicone, 2)
        inner = metas["inner"]
        assert inner["Helicone-User-Id"] == "alice"
        assert inner["Helicone-Property-Team"] == "a"
        assert inner["Helicone-Property-Tier"] == "2"
        assert inner["Helicone-Session-Id"] == "s-9"
        assert "Helicone-Session-Id" not in metas["outer"]

    def test_async_with_span_logs_record(self, helicone: HeliconeReceiver) -> None:
        """helicone_span() works as async with, and an exception inside fails the record."""

        async def run() -> None:
            async with helicone_span(name="async-block", user="a") as span:
                span.set_request({"model": "m"})
                await asyncio.sleep(0)
                span.set_response({"ok": True})
            with pytest.raises(KeyError):
                async with helicone_span(name="async-failing"):
                    raise KeyError("missing")

        asyncio.run(run())
        metas = meta_by_name(helicone, 2)
        assert metas["async-block"]["Helicone-User-Id"] == "a"
        statuses = {
            record["providerRequest"]["meta"]["Helicone-Property-Span-Name"]: record[
                "providerResponse"
            ]["status"]
            for record in helicone.records
        }
        assert statuses == {"async-block": 200, "async-failing": 500}

    def test_setter_after_end_raises(self) -> None:
        """Changing a span after its block ended raises, naming the method."""
        with helicone_span(name="ended") as span:
            pass
        with pytest.raises(RuntimeError, match="set_response"):
            span.set_response({"late": True})

    def test_inner_span_parent_is_outer(self) -> None:
        """current_span() inside a nested span has the outer span as parent."""
        with helicone_span(name="outer") as outer, helicone_span(name="inner") as inner:
            assert current_span() is inner
            assert inner.parent is outer
        assert current_span() is None

    def test_bind_as_block_restores_previous(self, helicone: HeliconeReceiver) -> None:
        """bind() in a with block applies inside and is undone on exit."""
        bind(user="base")
        with bind(user="temporary", properties={"Flag": "on"}), helicone_span(name="inside"):
            pass
        with helicone_span(name="after"):
            pass
        metas = meta_by_name(helicone, 2)
        assert metas["inside"]["Helicone-User-Id"] == "temporary"
        assert metas["inside"]["Helicone-Property-Flag"] == "on"
        assert metas["after"]["Helicone-User-Id"] == "base"
        assert "Helicone-Property-Flag" not in metas["after"]

    def test_bind_inside_span_updates_it(self, helicone: HeliconeReceiver) -> None:
        """Binding a user inside a handler tags that handler's own record."""

        @helicone_logged(name="handler")
        def handler(body: dict[str, Any]) -> dict[str, Any]:
            bind(user="late-user")
            return {}

        handler({"model": "m"})
        assert meta_by_name(helicone, 1)["handler"]["Helicone-User-Id"] == "late-user"

    def test_bind_does_not_outlive_handler_span(self) -> None:
        """A plain bind() call inside a handler does not reach its caller."""

        @helicone_logged
        def handler() -> None:
            bind(user="inner-user")

        handler()
        assert heliconetrace._context.bound_metadata().user is None


class TestIsolation:
    def test_gather_keeps_each_task_separate(self, helicone: HeliconeReceiver) -> None:
        """Concurrent tasks under asyncio.gather each log only their own user."""

        @helicone_logged
        async def handler(index: int) -> dict[str, Any]:
            bind(user=f"user-{index}", properties={"Index": index})
            await asyncio.sleep(0.01 * (index % 3))
            span = current_span()
            assert span is not None
            assert span.metadata.user == f"user-{index}"
            return {"index": index}

        async def run() -> None:
            await asyncio.gather(*(handler(index) for index in range(20)))

        asyncio.run(run())
        assert heliconetrace.flush(5.0)
        records = helicone.wait_for(20)
        for record in records:
            index = record["providerResponse"]["json"]["index"]
            meta = record["providerRequest"]["meta"]
            assert meta["Helicone-User-Id"] == f"user-{index}"
            assert meta["Helicone-Property-Index"] == str(index)

    def test_child_task_bind_leaves_parent_record(self, helicone: HeliconeReceiver) -> None:
        """bind() in tasks under asyncio.gather does not change the parent span's record."""

        async def child(index: int) -> None:
            bind(user=f"child-{index}")
            await asyncio.sleep(0)

        @helicone_logged(name="parent", user="parent-user")
        async def parent() -> None:
            await asyncio.gather(child(1), child(2))
            bind(properties={"After": "gather"})

        asyncio.run(parent())
        meta = meta_by_name(helicone, 1)["parent"]
        assert meta["Helicone-User-Id"] == "parent-user"
        assert meta["Helicone-Property-After"] == "gather"

    def test_threads_keep_each_request_separate(self, helicone: HeliconeReceiver) -> None:
        """Handlers running in several threads at once each log their own user."""
        barrier = threading.Barrier(8)

        @helicone_logged
        def handler(index: int) -> dict[str, Any]:
            with bind(user=f"thread-{index}"):
                barrier.wait(5)
                return {"index": index}

        threads = [threading.Thread(target=handler, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert heliconetrace.flush(5.0)
        for record in helicone.wait_for(8):
            index = record["providerResponse"]["json"]["index"]
            assert record["providerRequest"]["meta"]["Helicone-User-Id"] == f"thread-{index}"

    def test_generator_context_not_seen_by_consumer(self) -> None:
        """Between items, the consumer of a decorated generator sees its own context."""
        seen_inside: list[object] = []

        @helicone_logged(user="generator-user")
        def stream() -> Any:
            for index in range(3):
                seen_inside.append(current_span())
                yield str(index)

        with bind(user="consumer-user"):
            for _ in stream():
                assert current_span() is None
                assert heliconetrace._context.bound_metadata().user == "consumer-user"
        assert all(span is not None for span in seen_inside)

    def test_interleaved_generators_stay_separate(self, helicone: HeliconeReceiver) -> None:
        """Two decorated generators advanced in turn each log their own items and user."""

        @helicone_logged(model="m")
        def stream(user: str, words: list[str]) -> Any:
            bind(user=user)
            for word in words:
                span = current_span()
                assert span is not None
                assert span.metadata.user == user
                yield word

        first = stream("first", ["a", "b", "c"])
        second = stream("second", ["x", "y", "z"])
        for pair in zip(first, second, strict=True):
            assert pair[0] in "abc"
        assert heliconetrace.flush(5.0)
        records = helicone.wait_for(2)
        contents = {
            record["providerRequest"]["meta"]["Helicone-User-Id"]: record["providerResponse"][
                "json"
            ]["choices"][0]["message"]["content"]
            for record in records
        }
        assert contents == {"first": "abc", "second": "xyz"}

    def test_async_generator_stays_in_consumer_task(self) -> None:
        """Every item of a decorated async generator runs in the consumer's task."""
        tasks: list[object] = []

        @helicone_logged
        async def stream() -> Any:
            for index in range(3):
                tasks.append(asyncio.current_task())
                yield index

        async def run() -> object:
            async for _ in stream():
                pass
            return asyncio.current_task()

        consumer_task = asyncio.run(run())
        assert tasks == [consumer_task] * 3
