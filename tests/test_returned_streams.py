"""Handlers that return a stream: one record, finished when the stream has been read."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import heliconetrace
from heliconetrace import helicone_logged
from tests.helicone_schema import assert_valid_record
from tests.receiver import HeliconeReceiver

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from replay_server import ReplayServer

STREAM_BODY = {
    "model": "gpt-4o-2024-08-06",
    "messages": [{"role": "user", "content": "What's the weather like in SF?"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
EXPECTED = (
    "I'm unable to provide real-time weather updates. To get the current weather in San "
    "Francisco, I recommend checking a reliable weather website or a weather app."
)


@pytest.fixture
def gateway() -> Iterator[str]:
    with ReplayServer() as server:
        yield server.url


def one_record(helicone: HeliconeReceiver) -> dict[str, Any]:
    assert heliconetrace.flush(5.0)
    records = helicone.wait_for(1)
    assert heliconetrace.flush(1.0)
    assert len(helicone.records) == 1
    assert_valid_record(records[0])
    return records[0]


class TestOpenAIStream:
    def test_sync_stream_logged_after_reading(
        self, helicone: HeliconeReceiver, gateway: str
    ) -> None:
        """A returned openai Stream is logged once it is read, with the whole answer."""
        client = openai.OpenAI(base_url=gateway, api_key="sk-replay-not-a-secret")

        @helicone_logged(provider="openai")
        def chat(body: dict[str, Any]) -> openai.Stream[Any]:
            return client.chat.completions.create(**body)

        stream = chat(STREAM_BODY)
        assert isinstance(stream, openai.Stream)
        assert heliconetrace.flush(2.0)
        assert helicone.records == []

        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == EXPECTED
        record = one_record(helicone)
        response = record["providerResponse"]
        assert response["json"]["choices"][0]["message"]["content"] == EXPECTED
        assert response["json"]["usage"]["total_tokens"] == 44
        assert "x-request-id" in response["headers"]
        assert record["providerRequest"]["url"] == f"{gateway}/chat/completions"

    def test_async_stream_logged_after_reading(
        self, helicone: HeliconeReceiver, gateway: str
    ) -> None:
        """A returned openai AsyncStream is logged once it is read."""
        client = openai.AsyncOpenAI(base_url=gateway, api_key="sk-replay-not-a-secret")

        @helicone_logged(provider="openai")
        async def chat(body: dict[str, Any]) -> openai.AsyncStream[Any]:
            return await client.chat.completions.create(**body)

        async def run() -> str:
            stream = await chat(STREAM_BODY)
            parts = [
                chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices
            ]
            return "".join(parts)

        assert asyncio.run(run()) == EXPECTED
        record = one_record(helicone)
        assert record["providerResponse"]["json"]["choices"][0]["message"]["content"] == EXPECTED

    def test_unread_stream_logged_as_abandoned(
        self, helicone: HeliconeReceiver, gateway: str
    ) -> None:
        """A returned stream dropped unread is logged with reason abandoned."""
        client = openai.OpenAI(base_url=gateway, api_key="sk-replay-not-a-secret")

        @helicone_logged(provider="openai")
        def chat(body: dict[str, Any]) -> openai.Stream[Any]:
            return client.chat.completions.create(**body)

        stream = chat(STREAM_BODY)
        stream.close()
        del stream
        gc.collect()
        record = one_record(helicone)
        assert record["providerResponse"]["status"] == -3
        assert record["providerRequest"]["meta"]["Helicone-Property-End-Reason"] == "abandoned"

    def test_partly_read_stream_logged_as_closed(
        self, helicone: HeliconeReceiver, gateway: str
    ) -> None:
        """A stream whose reader stops early is logged with what was read."""
        client = openai.OpenAI(base_url=gateway, api_key="sk-replay-not-a-secret")

        @helicone_logged(provider="openai")
        def chat(body: dict[str, Any]) -> openai.Stream[Any]:
            return client.chat.completions.create(**body)

        stream = chat(STREAM_BODY)
        first_chunks = [next(stream) for _ in range(3)]
        assert len(first_chunks) == 3
        stream.close()
        del stream, first_chunks
        gc.collect()
        record = one_record(helicone)
        assert record["providerResponse"]["status"] == -3
        content = record["providerResponse"]["json"]["choices"][0]["message"]["content"]
        assert EXPECTED.startswith(content)
        assert len(content) < len(EXPECTED)


class TestStreamingResponse:
    def test_starlette_streaming_response(self, helicone: HeliconeReceiver) -> None:
        """A returned StreamingResponse is logged after its body was sent."""
        starlette_responses = pytest.importorskip("starlette.responses")
        httpx = pytest.importorskip("httpx")
        from starlette.applications import Starlette
        from starlette.routing import Route

        async def events() -> Any:
            for word in ("Hello", " world"):
                chunk = {"choices": [{"index": 0, "delta": {"content": word}}]}
                yield f"data: {__import__('json').dumps(chunk)}\n\n"

        @helicone_logged(model="gpt-4o-mini")
        async def endpoint(request: Any) -> Any:
            return starlette_responses.StreamingResponse(events(), media_type="text/event-stream")

        app = Starlette(routes=[Route("/chat", endpoint)])

        async def call() -> str:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                response = await client.get("/chat")
                return response.text

        body = asyncio.run(call())
        assert body.count("data: ") == 2
        record = one_record(helicone)
        assert (
            record["providerResponse"]["json"]["choices"][0]["message"]["content"] == "Hello world"
        )
