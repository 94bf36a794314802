"""heliconetrace.starlette.HeliconeContextMiddleware on a Starlette app, through httpx's ASGI
transport, and called directly for the scope types an app rarely gets in tests.

httpx's ASGI transport runs the app in the calling task, so a binding the middleware failed to
undo would still be visible to the test after the request.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import heliconetrace
from heliconetrace import MetadataError, current_span, helicone_logged
from heliconetrace._context import bound_metadata
from heliconetrace.starlette import HeliconeContextMiddleware
from tests.helicone_schema import assert_valid_record
from tests.receiver import HeliconeReceiver

WAIT = 10.0
ALL_HEADERS: dict[str, Any] = {
    "user_header": "X-User-Id",
    "session_id_header": "X-Session-Id",
    "session_path_header": "X-Session-Path",
    "session_name_header": "X-Session-Name",
    "property_headers": {"X-Tenant": "Tenant", "X-Plan": "Plan"},
}


@helicone_logged(name="async-endpoint")
async def answer_async(body: dict[str, Any]) -> dict[str, Any]:
    return {"answer": body["prompt"], "user": bound_metadata().user}


@helicone_logged(name="sync-endpoint")
def answer_sync(body: dict[str, Any]) -> dict[str, Any]:
    return {"answer": body["prompt"], "user": bound_metadata().user}


@helicone_logged(name="stream")
async def stream_text(prompt: str) -> AsyncIterator[str]:
    for word in prompt.split():
        span = current_span()
        assert span is not None
        yield f"{word}/{span.metadata.user} "


async def async_endpoint(request: Request) -> Response:
    return JSONResponse(await answer_async({"model": "m", **await request.json()}))


def sync_endpoint(request: Request) -> Response:
    # Starlette runs a sync endpoint in a worker thread; the body was read for it beforehand.
    return JSONResponse(answer_sync({"model": "m", "prompt": request.query_params["prompt"]}))


async def stream_endpoint(request: Request) -> Response:
    prompt = request.query_params["prompt"]
    return StreamingResponse(stream_text(prompt), media_type="text/plain")


def build_app(**middleware_options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/async", async_endpoint, methods=["POST"]),
            Route("/sync", sync_endpoint),
            Route("/stream", stream_endpoint),
        ]
    )
    app.add_middleware(HeliconeContextMiddleware, **(middleware_options or ALL_HEADERS))
    return app


def send(app: Any, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(main())


def meta_records(helicone: HeliconeReceiver, count: int) -> list[dict[str, str]]:
    """Wait for `count` records, validate them and return their meta."""
    assert heliconetrace.flush(WAIT)
    records = helicone.wait_for(count)
    assert len(records) == count
    for record in records:
        assert_valid_record(record)
    return [record["providerRequest"]["meta"] for record in records]


class TestBinding:
    def test_every_header_bound(self, helicone: HeliconeReceiver) -> None:
        """Each named header becomes its Helicone meta key on the request's record."""
        headers = {
            "x-user-id": "alice",
            "x-session-id": "session-1",
            "x-session-path": "/chat/answer",
            "x-session-name": "Support chat",
            "x-tenant": "acme",
            "x-plan": "pro",
        }
        send(build_app(), "POST", "/async", json={"prompt": "hi"}, headers=headers)
        meta = meta_records(helicone, 1)[0]
        assert meta["Helicone-User-Id"] == "alice"
        assert meta["Helicone-Session-Id"] == "session-1"
        assert meta["Helicone-Session-Path"] == "/chat/answer"
        assert meta["Helicone-Session-Name"] == "Support chat"
        assert meta["Helicone-Property-Tenant"] == "acme"
        assert meta["Helicone-Property-Plan"] == "pro"

    def test_sync_endpoint_sees_binding(self, helicone: HeliconeReceiver) -> None:
        """A sync endpoint, run in a worker thread, logs with the request's headers."""
        response = send(build_app(), "GET", "/sync?prompt=hi", headers={"x-user-id": "bob"})
        assert response.json() == {"answer": "hi", "user": "bob"}
        assert meta_records(helicone, 1)[0]["Helicone-User-Id"] == "bob"

    def test_streaming_response_sees_binding(self, helicone: HeliconeReceiver) -> None:
        """A decorated async generator fed to StreamingResponse runs with the request's binding."""
        response = send(build_app(), "GET", "/stream?prompt=a+b", headers={"x-user-id": "carol"})
        assert response.text == "a/carol b/carol "
        assert meta_records(helicone, 1)[0]["Helicone-User-Id"] == "carol"
        record = helicone.records[0]
        assert record["providerResponse"]["json"]["choices"][0]["message"]["content"] == (
            "a/carol b/carol "
        )

    def test_binding_ends_with_request(self) -> None:
        """After the request, the task that ran it has no binding left."""

        async def bound_after_request() -> str | None:
            transport = httpx.ASGITransport(app=build_app())
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await client.post("/async", json={"prompt": "hi"}, headers={"x-user-id": "bob"})
            return bound_metadata().user

        assert asyncio.run(bound_after_request()) is None

    def test_concurrent_requests(self, helicone: HeliconeReceiver) -> None:
        """Requests handled at once each log the user of their own headers."""
        app = build_app()

        async def main() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                calls = []
                for index in range(6):
                    headers = {"x-user-id": f"user-{index}"}
                    if index % 2:
                        calls.append(client.get(f"/sync?prompt={index}", headers=headers))
                    else:
                        calls.append(
                            client.post("/async", json={"prompt": str(index)}, headers=headers)
                        )
                return await asyncio.gather(*calls)

        for response in asyncio.run(main()):
            answer = response.json()
            assert answer["user"] == f"user-{answer['answer']}"
        users = sorted(meta["Helicone-User-Id"] for meta in meta_records(helicone, 6))
        assert users == [f"user-{index}" for index in range(6)]


class TestHeaderValues:
    def test_missing_header_binds_nothing(self, helicone: HeliconeReceiver) -> None:
        """Without the headers, the record has no user, session or property from them."""
        send(build_app(), "POST", "/async", json={"prompt": "hi"})
        meta = meta_records(helicone, 1)[0]
        assert "Helicone-User-Id" not in meta
        assert "Helicone-Session-Id" not in meta
        assert "Helicone-Property-Tenant" not in meta

    def test_empty_header_binds_nothing(self, helicone: HeliconeReceiver) -> None:
        """A header with an empty or blank value counts as missing."""
        send(build_app(), "POST", "/async", json={"prompt": "hi"}, headers={"x-user-id": "  "})
        assert "Helicone-User-Id" not in meta_records(helicone, 1)[0]

    def test_first_of_repeated_header(self, helicone: HeliconeReceiver) -> None:
        """A header sent twice binds its first non-empty value."""
        headers = [("x-user-id", ""), ("x-user-id", "first"), ("x-user-id", "second")]
        send(build_app(), "POST", "/async", json={"prompt": "hi"}, headers=headers)
        assert meta_records(helicone, 1)[0]["Helicone-User-Id"] == "first"

    def test_latin1_value_percent_encoded(self, helicone: HeliconeReceiver) -> None:
        """A Latin-1 header value is read as text and percent-encoded in the meta."""
        headers = [(b"x-user-id", "Zoë".encode("latin-1"))]
        send(build_app(), "POST", "/async", json={"prompt": "hi"}, headers=headers)
        assert meta_records(helicone, 1)[0]["Helicone-User-Id"] == "Zo%C3%AB"

    def test_utf8_value_decoded_once(self, helicone: HeliconeReceiver) -> None:
        """A UTF-8 header value is read as UTF-8, not as Latin-1 characters."""
        headers = [(b"x-user-id", "Démo 日本".encode())]
        send(build_app(), "POST", "/async", json={"prompt": "hi"}, headers=headers)
        user = meta_records(helicone, 1)[0]["Helicone-User-Id"]
        assert user == "D%C3%A9mo %E6%97%A5%E6%9C%AC"

    def test_invalid_value_skipped(self, helicone: HeliconeReceiver) -> None:
        """An invalid value is skipped with a warning, and the other headers still bind."""
        warnings: list[dict[str, Any]] = []

        def keep(logger: Any, method_name: str, event_dict: Any) -> Any:
            warnings.append(dict(event_dict))
            raise structlog.DropEvent

        structlog.configure(processors=[keep])
        try:
            headers = {"x-session-path": "no-leading-slash", "x-user-id": "alice"}
            response = send(build_app(), "POST", "/async", json={"prompt": "hi"}, headers=headers)
        finally:
            structlog.reset_defaults()
        assert response.status_code == 200
        meta = meta_records(helicone, 1)[0]
        assert meta["Helicone-User-Id"] == "alice"
        assert "Helicone-Session-Path" not in meta
        skipped = [event for event in warnings if event.get("header") == "x-session-path"]
        assert len(skipped) == 1
        assert "session_path" in skipped[0]["error"]

    def test_one_header_for_two_values(self, helicone: HeliconeReceiver) -> None:
        """One header may feed the user and a property at once."""
        app = build_app(user_header="x-account", property_headers={"X-Account": "Account"})
        send(app, "POST", "/async", json={"prompt": "hi"}, headers={"x-account": "acct-9"})
        meta = meta_records(helicone, 1)[0]
        assert meta["Helicone-User-Id"] == "acct-9"
        assert meta["Helicone-Property-Account"] == "acct-9"


async def call_directly(scope: dict[str, Any], **options: Any) -> list[str | None]:
    """Call the middleware with `scope` and return the users its inner app saw."""
    seen: list[str | None] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(bound_metadata().user)

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send_message(message: Any) -> None:
        pass

    await HeliconeContextMiddleware(inner, **options)(scope, receive, send_message)
    return seen


class TestScopes:
    def test_websocket_bound(self) -> None:
        """A websocket connection gets the binding from its handshake headers."""
        scope = {"type": "websocket", "headers": [(b"x-user-id", b"dora")]}
        assert asyncio.run(call_directly(scope, user_header="x-user-id")) == ["dora"]

    def test_lifespan_passed_through(self) -> None:
        """A lifespan scope reaches the app unchanged and binds nothing."""
        scope = {"type": "lifespan", "headers": [(b"x-user-id", b"dora")]}
        assert asyncio.run(call_directly(scope, user_header="x-user-id")) == [None]

    def test_http_without_headers_key(self) -> None:
        """An http scope without a headers entry binds nothing and still reaches the app."""
        assert asyncio.run(call_directly({"type": "http"}, user_header="x-user-id")) == [None]


class TestConstruction:
    def test_no_header_rejected(self) -> None:
        """A middleware that reads no header raises TypeError naming the arguments."""
        with pytest.raises(TypeError, match="user_header"):
            HeliconeContextMiddleware(build_app())

    def test_blank_header_name_rejected(self) -> None:
        """A blank header name raises TypeError."""
        with pytest.raises(TypeError, match="session_id_header"):
            HeliconeContextMiddleware(build_app(), session_id_header=" ")

    def test_bad_property_name_rejected(self) -> None:
        """A property name that cannot be a header name raises MetadataError at startup."""
        with pytest.raises(MetadataError, match="property name"):
            HeliconeContextMiddleware(build_app(), property_headers={"x-team": "Team Name"})

    def test_imports_no_starlette(self) -> None:
        """Importing heliconetrace.starlette does not import Starlette."""
        code = "import sys, heliconetrace.starlette; print('starlette' in sys.modules)"
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert result.stdout.strip() == "False"
