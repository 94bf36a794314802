"""Tests of examples/replay_server.py through the real openai SDK."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletionMessageParam

from examples.replay_server import FIXTURES, ReplayServer

API_KEY = "sk-replay-not-a-secret"
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What's the weather like?"}
]
# Texts and token counts as listed in examples/fixtures/PROVENANCE.md.
STREAM_TEXT = (
    "I'm unable to provide real-time weather updates. To get the current weather in "
    "San Francisco, I recommend checking a reliable weather website or a weather app."
)


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as replay:
        yield replay


@pytest.fixture
def client(server: ReplayServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=server.url, api_key=API_KEY, max_retries=0) as sdk_client:
        yield sdk_client


class TestChat:
    """Non-streaming chat completions."""

    def test_default_response(self, client: OpenAI) -> None:
        """Any ordinary model gets the recorded Portkey response."""
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert completion.id == "chatcmpl-BJ3tOEUq2WfPnYtwubhExHvBQEJD9"
        assert completion.choices[0].message.content is not None
        assert completion.choices[0].message.content.startswith("I don't have real-time data")

    def test_default_usage(self, client: OpenAI) -> None:
        """The recorded usage reaches the client."""
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert completion.usage is not None
        assert completion.usage.total_tokens == 63

    def test_provider_headers(self, client: OpenAI) -> None:
        """The response carries OpenAI-style headers."""
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        assert raw.headers["x-request-id"].startswith("req_")
        assert raw.headers["openai-processing-ms"] == "42"
        assert raw.headers["x-ratelimit-remaining-requests"] == "9999"

    def test_override(self, client: OpenAI) -> None:
        """A replay:<file> model picks that fixture."""
        completion = client.chat.completions.create(
            model="replay:openai-chat-tool-calls-parallel.response.json", messages=MESSAGES
        )
        tool_calls = completion.choices[0].message.tool_calls or []
        names = [call.function.name for call in tool_calls if call.type == "function"]
        assert names == ["GetWeatherArgs", "get_stock_price"]

    def test_override_missing(self, client: OpenAI) -> None:
        """A replay:<file> model without such a fixture gets 404."""
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="replay:nothing.json", messages=MESSAGES)

    def test_override_cannot_leave_fixtures(self, client: OpenAI) -> None:
        """A directory part in replay:<file> is ignored, so files outside fixtures stay hidden."""
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="replay:../replay_server.py", messages=MESSAGES)


class TestStream:
    """Streaming chat completions."""

    def test_text_and_usage(self, client: OpenAI) -> None:
        """The recorded stream reassembles into its text and ends with a usage chunk."""
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        assert text == STREAM_TEXT
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.total_tokens == 44

    def test_bytes_unchanged(self, server: ReplayServer) -> None:
        """The wire body is the recording, byte for byte."""
        request = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
        with httpx.stream("POST", server.url + "/chat/completions", json=request) as response:
            body = b"".join(response.iter_bytes())
        assert response.headers["content-type"].startswith("text/event-stream")
        assert body == (FIXTURES / "openai-chat-stream-content-usage.sse").read_bytes()

    def test_arrives_in_chunks(self) -> None:
        """Events arrive one by one while the server is still sending."""
        with (
            ReplayServer(chunk_delay=0.02) as slow,
            OpenAI(base_url=slow.url, api_key=API_KEY) as slow_client,
        ):
            stream = slow_client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            arrivals = [time.monotonic() for _ in stream]
        assert len(arrivals) == 33
        assert arrivals[-1] - arrivals[0] > 0.3

    def test_override_without_usage(self, client: OpenAI) -> None:
        """replay:openai-chat-stream-content.sse streams a recording that has no usage."""
        stream = client.chat.completions.create(
            model="replay:openai-chat-stream-content.sse", messages=MESSAGES, stream=True
        )
        assert [chunk.usage for chunk in stream if chunk.usage is not None] == []


class TestAsync:
    """The async client."""

    def test_create(self, server: ReplayServer) -> None:
        """AsyncOpenAI gets the recorded response."""

        async def run() -> str | None:
            async with AsyncOpenAI(base_url=server.url, api_key=API_KEY) as client:
                completion = await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES
                )
                return completion.id

        assert asyncio.run(run()) == "chatcmpl-BJ3tOEUq2WfPnYtwubhExHvBQEJD9"

    def test_stream(self, server: ReplayServer) -> None:
        """AsyncOpenAI streams the recorded text."""

        async def run() -> str:
            async with AsyncOpenAI(base_url=server.url, api_key=API_KEY) as client:
                stream = await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=MESSAGES,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
                return "".join(parts)

        assert asyncio.run(run()) == STREAM_TEXT


class TestErrors:
    """Recorded error responses."""

    def test_401(self, client: OpenAI) -> None:
        """replay-401 raises AuthenticationError with the recorded code."""
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model="replay-401", messages=MESSAGES)
        assert caught.value.status_code == 401
        assert caught.value.code == "invalid_api_key"

    def test_429(self, client: OpenAI) -> None:
        """replay-429 raises RateLimitError with the recorded code."""
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="replay-429", messages=MESSAGES)
        assert caught.value.status_code == 429
        assert caught.value.code == "insufficient_quota"

    def test_429_when_streaming(self, client: OpenAI) -> None:
        """An error model fails before streaming starts."""
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="replay-429", messages=MESSAGES, stream=True)

    def test_unknown_path(self, server: ReplayServer) -> None:
        """A path the server does not serve gets a 404 JSON error."""
        response = httpx.post(server.url + "/embeddings", json={"model": "x", "input": "hi"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "unknown_url"

    def test_invalid_json(self, server: ReplayServer) -> None:
        """A body that is not JSON gets 400."""
        response = httpx.post(server.url + "/chat/completions", content=b"{oops")
        assert response.status_code == 400


class TestModels:
    """GET /v1/models and the fixture files."""

    def test_list(self, client: OpenAI) -> None:
        """The model list names the error models and every fixture override."""
        ids = {model.id for model in client.models.list()}
        assert {"replay-401", "replay-429", "replay:portkey-chat.response.json"} <= ids

    def test_fixtures_documented(self) -> None:
        """Every fixture file has a row in PROVENANCE.md."""
        provenance = (FIXTURES / "PROVENANCE.md").read_text()
        fixtures = [path.name for path in FIXTURES.iterdir() if path.name != "PROVENANCE.md"]
        undocumented = [name for name in fixtures if f"| {name} |" not in provenance]
        assert undocumented == []


class TestScript:
    """Running the module as a script."""

    def test_serves_until_interrupted(self) -> None:
        """The script prints its URL, serves, and exits cleanly on SIGINT."""
        script = Path(__file__).resolve().parent.parent / "examples" / "replay_server.py"
        process = subprocess.Popen(
            [sys.executable, str(script), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            url = line.split(" at ", 1)[1].split(";", 1)[0]
            response = httpx.get(url + "/models", timeout=5)
            assert response.status_code == 200
            assert url.startswith("http://127.0.0.1:")
        finally:
            process.send_signal(signal.SIGINT)
            exit_code = process.wait(timeout=5)
        assert exit_code == 0
