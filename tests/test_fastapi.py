"""FastAPI with decorated endpoints, through httpx's ASGI transport: what FastAPI reads from a
decorated endpoint's signature, where sync code runs, and what reaches Helicone.

httpx's ASGI transport runs the app in the calling task, so values an app binds without
undoing them would reach the next request of the same task. Tests that send requests
concurrently give each its own task, as an ASGI server does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

import heliconetrace
from examples.fastapi_app import create_app
from examples.replay_server import ReplayServer
from heliconetrace import bind, current_span, helicone_logged
from heliconetrace._context import bound_metadata
from heliconetrace.starlette import HeliconeContextMiddleware
from tests.helicone_schema import assert_valid_record
from tests.receiver import HeliconeReceiver

WAIT = 10.0
HEADERS = {"x-user-id": "alice", "x-session-id": "session-1", "x-tenant": "acme"}
QUESTION = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Weather?"}]}
# Token counts of the replayed recordings, as examples/fixtures/PROVENANCE.md lists them.
CHAT_TOTAL_TOKENS = 63
STREAM_TOTAL_TOKENS = 44
STREAM_TEXT_START = "I'm unable to provide real-time weather updates."


def client_for(app: Any, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def records(helicone: HeliconeReceiver, count: int) -> list[dict[str, Any]]:
    """Wait for `count` records and return them, each validated."""
    assert heliconetrace.flush(WAIT)
    received = helicone.wait_for(count)
    assert len(received) == count
    for record in received:
        assert_valid_record(record)
    return received


def meta_of(record: dict[str, Any]) -> dict[str, str]:
    meta: dict[str, str] = record["providerRequest"]["meta"]
    return meta


@pytest.fixture
def gateway() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


@pytest.fixture
def example_app(gateway: ReplayServer) -> Any:
    return create_app(gateway.url, "sk-replay-not-a-secret")


class TestExampleApp:
    def test_async_chat(self, example_app: Any, helicone: HeliconeReceiver) -> None:
        """POST /v1/chat returns the completion, and its record has the header values."""

        async def main() -> httpx.Response:
            async with client_for(example_app) as client:
                return await client.post("/v1/chat", json=QUESTION, headers=HEADERS)

        response = asyncio.run(main())
        assert response.status_code == 200
        assert response.json()["usage"]["total_tokens"] == CHAT_TOTAL_TOKENS
        record = records(helicone, 1)[0]
        meta = meta_of(record)
        assert meta["Helicone-User-Id"] == "alice"
        assert meta["Helicone-Session-Id"] == "session-1"
        assert meta["Helicone-Property-Tenant"] == "acme"
        assert meta["Helicone-Property-Endpoint"] == "chat"
        assert record["providerRequest"]["json"]["model"] == "gpt-4o-mini"
        assert record["providerResponse"]["json"]["usage"]["total_tokens"] == CHAT_TOTAL_TOKENS

    def test_sync_chat(self, example_app: Any, helicone: HeliconeReceiver) -> None:
        """POST /v1/chat/sync, a sync endpoint, returns the completion and logs the header values."""

        async def main() -> httpx.Response:
            async with client_for(example_app) as client:
                return await client.post("/v1/chat/sync", json=QUESTION, headers=HEADERS)

        response = asyncio.run(main())
        assert response.status_code == 200
        record = records(helicone, 1)[0]
        meta = meta_of(record)
        assert meta["Helicone-User-Id"] == "alice"
        assert meta["Helicone-Property-Endpoint"] == "chat-sync"
        assert record["providerResponse"]["json"]["usage"]["total_tokens"] == CHAT_TOTAL_TOKENS

    def test_stream_chat(self, example_app: Any, helicone: HeliconeReceiver) -> None:
        """POST /v1/chat/stream sends SSE, and its record is the reassembled stream with usage."""

        async def main() -> tuple[httpx.Response, list[str]]:
            async with (
                client_for(example_app) as client,
                client.stream(
                    "POST", "/v1/chat/stream", json=QUESTION, headers=HEADERS
                ) as response,
            ):
                lines = [line async for line in response.aiter_lines() if line]
            return response, lines

        response, lines = asyncio.run(main())
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert lines[-1] == "data: [DONE]"
        assert all(line.startswith("data: ") for line in lines)
        record = records(helicone, 1)[0]
        meta = meta_of(record)
        assert meta["Helicone-User-Id"] == "alice"
        assert meta["Helicone-Property-Endpoint"] == "chat-stream"
        assert record["providerRequest"]["json"]["stream"] is True
        assert record["providerResponse"]["textBody"].startswith("data: ")
        response_json = record["providerResponse"]["json"]
        assert response_json["usage"]["total_tokens"] == STREAM_TOTAL_TOKENS
        assert response_json["choices"][0]["message"]["content"].startswith(STREAM_TEXT_START)

    def test_concurrent_users(self, example_app: Any, helicone: HeliconeReceiver) -> None:
        """Requests handled at once, on every endpoint, each log the user of their own headers."""
        paths = ["/v1/chat", "/v1/chat/sync", "/v1/chat/stream"] * 3

        async def main() -> list[httpx.Response]:
            async with client_for(example_app) as client:
                calls = [
                    client.post(path, json=QUESTION, headers={"x-user-id": f"user-{index}"})
                    for index, path in enumerate(paths)
                ]
                return await asyncio.gather(*calls)

        for response in asyncio.run(main()):
            assert response.status_code == 200
        endpoint_of = {"/v1/chat": "chat", "/v1/chat/sync": "chat-sync"}
        expected = {
            (f"user-{i}", endpoint_of.get(path, "chat-stream")) for i, path in enumerate(paths)
        }
        seen = {
            (meta_of(record)["Helicone-User-Id"], meta_of(record)["Helicone-Property-Endpoint"])
            for record in records(helicone, len(paths))
        }
        assert seen == expected

    def test_provider_error(self, example_app: Any, helicone: HeliconeReceiver) -> None:
        """A provider error fails the request, and the record has the provider's status."""
        rejected = {**QUESTION, "model": "replay-429"}

        async def main() -> httpx.Response:
            async with client_for(example_app, raise_app_exceptions=False) as client:
                return await client.post("/v1/chat", json=rejected, headers=HEADERS)

        assert asyncio.run(main()).status_code == 500
        record = records(helicone, 1)[0]
        assert record["providerResponse"]["status"] == 429
        assert meta_of(record)["Helicone-User-Id"] == "alice"


# A FastAPI app with one endpoint of each kind FastAPI treats differently, built with and
# without @helicone_logged to compare what FastAPI makes of the two.


class Item(BaseModel):
    name: str
    price: float


class ItemOut(BaseModel):
    """A response model that leaves out the fields the handler returns beyond it."""

    name: str


class Completion(BaseModel):
    model: str
    answer: str
    user: str | None = None
    thread: str


class ChatBody(BaseModel):
    model: str
    prompt: str


class Settings:
    prefix = "Answer: "


def get_settings() -> Settings:
    return Settings()


async def get_tenant(x_tenant: Annotated[str, Header()] = "none") -> str:
    return x_tenant


def get_database() -> Iterator[dict[str, str]]:
    yield {"connection": "open"}


async def bind_from_async_dependency(x_user: Annotated[str | None, Header()] = None) -> None:
    if x_user is not None:
        bind(user=x_user)


def bind_from_sync_dependency(x_user: Annotated[str | None, Header()] = None) -> None:
    if x_user is not None:
        bind(user=x_user)


def build_app(decorate: bool) -> FastAPI:
    """Build the test app; with `decorate`, every endpoint is decorated with @helicone_logged."""

    def logged(function: Any) -> Any:
        return (
            helicone_logged(properties={"Endpoint": function.__name__})(function)
            if decorate
            else function
        )

    app = FastAPI(title="Signature test")
    app.add_middleware(HeliconeContextMiddleware, user_header="x-user-id")

    @app.get("/items/{item_id}", response_model=ItemOut, tags=["items"], summary="Read an item")
    @logged
    async def read_item(
        item_id: int,
        tenant: Annotated[str, Depends(get_tenant)],
        q: Annotated[str | None, Query(max_length=20)] = None,
        limit: int = 10,
    ) -> dict[str, Any]:
        """Return the item with extra fields that the response model drops."""
        return {"name": f"item-{item_id}-{q}-{limit}-{tenant}", "secret": "dropped"}

    @app.post("/items", status_code=201)
    @logged
    def create_item(item: Item, database: Annotated[dict[str, str], Depends(get_database)]) -> Item:
        if database["connection"] != "open":
            raise HTTPException(503)
        return item

    @app.post("/chat")
    @logged
    def chat(body: ChatBody, settings: Annotated[Settings, Depends(get_settings)]) -> Completion:
        span = current_span()
        return Completion(
            model=body.model,
            answer=settings.prefix + body.prompt,
            user=span.metadata.user if span is not None else None,
            thread=threading.current_thread().name,
        )

    @app.post("/chat/async-dependency", dependencies=[Depends(bind_from_async_dependency)])
    @logged
    async def chat_async_dependency(body: ChatBody) -> Completion:
        return Completion(
            model=body.model, answer="", user=bound_metadata().user, thread="event loop"
        )

    @app.post("/chat/sync-dependency", dependencies=[Depends(bind_from_sync_dependency)])
    @logged
    async def chat_sync_dependency(body: ChatBody) -> Completion:
        return Completion(
            model=body.model, answer="", user=bound_metadata().user, thread="event loop"
        )

    @app.post("/chat/stream")
    async def chat_stream(body: ChatBody) -> StreamingResponse:
        return StreamingResponse(stream_words(body), media_type="text/event-stream")

    return app


@helicone_logged(properties={"Endpoint": "stream"})
async def stream_words(body: ChatBody) -> AsyncIterator[str]:
    """Yield OpenAI-style SSE events, one word each, then [DONE]."""
    for word in body.prompt.split():
        span = current_span()
        user = span.metadata.user if span is not None else None
        chunk = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "model": body.model,
            "choices": [{"index": 0, "delta": {"content": f"{word} "}, "finish_reason": None}],
        }
        yield f"data: {ChatChunk(**chunk).model_dump_json()}\n\n"
        await asyncio.sleep(0)
        assert user == bound_metadata().user
    yield "data: [DONE]\n\n"


class ChatChunk(BaseModel):
    id: str
    object: str
    model: str
    choices: list[dict[str, Any]]


def call(app: FastAPI, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def main() -> httpx.Response:
        async with client_for(app) as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(main())


class TestSignature:
    def test_openapi_identical(self) -> None:
        """The OpenAPI schema of the decorated app equals the undecorated app's."""
        assert build_app(decorate=True).openapi() == build_app(decorate=False).openapi()

    def test_openapi_lists_parameters(self) -> None:
        """The decorated endpoint's path, query and header parameters reach the schema."""
        operation = build_app(decorate=True).openapi()["paths"]["/items/{item_id}"]["get"]
        names = {(parameter["name"], parameter["in"]) for parameter in operation["parameters"]}
        assert names == {
            ("item_id", "path"),
            ("q", "query"),
            ("limit", "query"),
            ("x-tenant", "header"),
        }
        assert operation["operationId"] == "read_item_items__item_id__get"

    def test_path_query_and_dependency(self, helicone: HeliconeReceiver) -> None:
        """Path and query parameters are converted, a dependency is injected, extras dropped."""
        response = call(
            build_app(decorate=True),
            "GET",
            "/items/7",
            params={"q": "red", "limit": "3"},
            headers={"x-tenant": "acme"},
        )
        assert response.status_code == 200
        assert response.json() == {"name": "item-7-red-3-acme"}
        record = records(helicone, 1)[0]
        assert meta_of(record)["Helicone-Property-Endpoint"] == "read_item"

    def test_invalid_parameter_rejected(self, helicone: HeliconeReceiver) -> None:
        """An invalid path or query parameter gets 422 before the handler runs, so no record."""
        app = build_app(decorate=True)
        assert call(app, "GET", "/items/seven").status_code == 422
        assert call(app, "GET", "/items/7", params={"q": "x" * 21}).status_code == 422
        assert heliconetrace.flush(WAIT)
        assert helicone.records == []

    def test_body_and_yield_dependency(self, helicone: HeliconeReceiver) -> None:
        """A sync endpoint gets its body model and a dependency with yield, and keeps status_code."""
        item = {"name": "lamp", "price": 12.5}
        response = call(build_app(decorate=True), "POST", "/items", json=item)
        assert response.status_code == 201
        assert response.json() == item
        assert meta_of(records(helicone, 1)[0])["Helicone-Property-Endpoint"] == "create_item"

    def test_sync_endpoint_in_worker(self, helicone: HeliconeReceiver) -> None:
        """A sync endpoint runs in a worker thread and its span has the middleware's user."""
        body = {"model": "test-model", "prompt": "hello"}
        response = call(
            build_app(decorate=True), "POST", "/chat", json=body, headers={"x-user-id": "bob"}
        )
        answer = response.json()
        assert answer["thread"] != threading.current_thread().name
        assert answer["user"] == "bob"
        assert answer["answer"] == "Answer: hello"
        record = records(helicone, 1)[0]
        assert meta_of(record)["Helicone-User-Id"] == "bob"
        assert record["providerRequest"]["json"] == body
        assert record["providerResponse"]["json"]["answer"] == "Answer: hello"


class TestDependencies:
    def test_async_dependency_bind_reaches_endpoint(self, helicone: HeliconeReceiver) -> None:
        """bind() in an async dependency runs in the request's context and tags the record."""
        body = {"model": "test-model", "prompt": "hi"}
        response = call(
            build_app(decorate=True),
            "POST",
            "/chat/async-dependency",
            json=body,
            headers={"x-user": "from-dependency"},
        )
        assert response.json()["user"] == "from-dependency"
        assert meta_of(records(helicone, 1)[0])["Helicone-User-Id"] == "from-dependency"

    def test_sync_dependency_bind_is_lost(self, helicone: HeliconeReceiver) -> None:
        """bind() in a sync dependency stays in its worker thread's copy and misses the endpoint."""
        body = {"model": "test-model", "prompt": "hi"}
        response = call(
            build_app(decorate=True),
            "POST",
            "/chat/sync-dependency",
            json=body,
            headers={"x-user": "from-dependency"},
        )
        assert response.json()["user"] is None
        assert "Helicone-User-Id" not in meta_of(records(helicone, 1)[0])


class TestStreamingResponse:
    def test_decorated_generator_streams(self, helicone: HeliconeReceiver) -> None:
        """A decorated async generator fed to StreamingResponse streams SSE and logs the text."""
        body = {"model": "test-model", "prompt": "one two three"}
        response = call(
            build_app(decorate=False),
            "POST",
            "/chat/stream",
            json=body,
            headers={"x-user-id": "carol"},
        )
        assert response.status_code == 200
        events = [line for line in response.text.split("\n") if line]
        assert len(events) == 4
        assert events[-1] == "data: [DONE]"
        record = records(helicone, 1)[0]
        meta = meta_of(record)
        assert meta["Helicone-User-Id"] == "carol"
        assert meta["Helicone-Property-Endpoint"] == "stream"
        assert record["providerRequest"]["json"]["stream"] is True
        assert record["providerResponse"]["textBody"] == response.text
        message = record["providerResponse"]["json"]["choices"][0]["message"]
        assert message["content"] == "one two three "

    def test_concurrent_streams_keep_users(self, helicone: HeliconeReceiver) -> None:
        """Streams sent at once each log their own text and the user of their own request."""
        app = build_app(decorate=False)

        async def main() -> list[httpx.Response]:
            async with client_for(app) as client:
                calls = [
                    client.post(
                        "/chat/stream",
                        json={"model": "m", "prompt": f"words of user {index}"},
                        headers={"x-user-id": f"user-{index}"},
                    )
                    for index in range(5)
                ]
                return await asyncio.gather(*calls)

        for response in asyncio.run(main()):
            assert response.status_code == 200
        for record in records(helicone, 5):
            content = record["providerResponse"]["json"]["choices"][0]["message"]["content"]
            index = content.split()[-1]
            assert meta_of(record)["Helicone-User-Id"] == f"user-{index}"
