"""A FastAPI chat service that logs every LLM call to Helicone with heliconetrace.

The service forwards chat requests to an OpenAI-compatible gateway with the `openai` SDK:

- ``POST /v1/chat``: an async endpoint, decorated with `@helicone_logged`;
- ``POST /v1/chat/sync``: the same as a sync endpoint, which FastAPI runs in a worker thread;
- ``POST /v1/chat/stream``: the answer as server-sent events, from a decorated async generator
  that a `StreamingResponse` sends chunk by chunk.

`HeliconeContextMiddleware` reads the caller's user, session and tenant from request headers
and binds them for the request, so every record of that request carries them.

Run ``python examples/fastapi_app.py`` for an offline demo: it starts the replay server from
``replay_server.py`` on 127.0.0.1, sends one request to each endpoint through httpx's ASGI
transport, and shows the records, which go to a local file. It needs ``pip install fastapi``
beside the ``examples`` extra. To serve the app, point it at a gateway and run it with an ASGI
server from the ``examples`` folder::

    GATEWAY_URL=https://gateway.example/v1 GATEWAY_API_KEY=... \\
        uvicorn fastapi_app:create_app_from_environment --factory
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, Field

import heliconetrace
from heliconetrace import helicone_logged
from heliconetrace.starlette import HeliconeContextMiddleware


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """A chat request from the service's own clients: the OpenAI fields this service forwards."""

    model: str = Field(examples=["gpt-4o-mini"])
    messages: list[ChatMessage]
    temperature: float | None = Field(default=None, ge=0, le=2)

    def provider_body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def sync_client(request: Request) -> OpenAI:
    client: OpenAI = request.app.state.client
    return client


def async_client(request: Request) -> AsyncOpenAI:
    client: AsyncOpenAI = request.app.state.async_client
    return client


@helicone_logged(provider="openai", properties={"Endpoint": "chat-stream"})
async def relay_events(client: AsyncOpenAI, body: dict[str, Any]) -> AsyncIterator[str]:
    """Yield the provider's stream as SSE events; heliconetrace logs the reassembled answer."""
    stream = await client.chat.completions.create(**body)
    async for chunk in stream:
        yield f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n"
    yield "data: [DONE]\n\n"


def create_app(gateway_url: str, gateway_api_key: str) -> FastAPI:
    """Build the app, sending provider calls to the OpenAI-compatible API at `gateway_url`."""
    app = FastAPI(title="Chat service")
    app.state.client = OpenAI(base_url=gateway_url, api_key=gateway_api_key)
    app.state.async_client = AsyncOpenAI(base_url=gateway_url, api_key=gateway_api_key)
    app.add_middleware(
        HeliconeContextMiddleware,
        user_header="x-user-id",
        session_id_header="x-session-id",
        session_name_header="x-session-name",
        property_headers={"x-tenant": "Tenant"},
    )

    # @helicone_logged goes below the route decorator, so FastAPI registers the logged function.
    # It keeps the signature, so FastAPI reads the body model and the dependencies as usual.
    @app.post("/v1/chat")
    @helicone_logged(provider="openai", properties={"Endpoint": "chat"})
    async def chat(
        body: ChatRequest, client: Annotated[AsyncOpenAI, Depends(async_client)]
    ) -> ChatCompletion:
        completion: ChatCompletion = await client.chat.completions.create(**body.provider_body())
        return completion

    @app.post("/v1/chat/sync")
    @helicone_logged(provider="openai", properties={"Endpoint": "chat-sync"})
    def chat_sync(
        body: ChatRequest, client: Annotated[OpenAI, Depends(sync_client)]
    ) -> ChatCompletion:
        completion: ChatCompletion = client.chat.completions.create(**body.provider_body())
        return completion

    @app.post("/v1/chat/stream")
    async def chat_stream(
        body: ChatRequest, client: Annotated[AsyncOpenAI, Depends(async_client)]
    ) -> StreamingResponse:
        # Without include_usage an OpenAI stream reports no tokens, and Helicone shows no cost.
        provider_body = {
            **body.provider_body(),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return StreamingResponse(
            relay_events(client, provider_body), media_type="text/event-stream"
        )

    return app


def create_app_from_environment() -> FastAPI:
    """Build the app from GATEWAY_URL and GATEWAY_API_KEY, for `uvicorn --factory`."""
    missing = [name for name in ("GATEWAY_URL", "GATEWAY_API_KEY") if not os.environ.get(name)]
    if missing:
        raise RuntimeError(
            f"Set {' and '.join(missing)}: the OpenAI-compatible API to forward chat requests "
            "to, for example GATEWAY_URL=https://api.openai.com/v1."
        )
    return create_app(os.environ["GATEWAY_URL"], os.environ["GATEWAY_API_KEY"])


async def send_requests(app: FastAPI) -> None:
    """Call each endpoint once, as a client of the service would."""
    import httpx

    headers = {"x-user-id": "alice", "x-session-id": "demo-session", "x-tenant": "acme"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Weather?"}]}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chat.local") as client:
        for path in ("/v1/chat", "/v1/chat/sync"):
            response = await client.post(path, json=body, headers=headers)
            response.raise_for_status()
            answer = response.json()["choices"][0]["message"]["content"]
            print(f"POST {path}: {answer[:60]}...")
        async with client.stream("POST", "/v1/chat/stream", json=body, headers=headers) as stream:
            events = [line async for line in stream.aiter_lines() if line.startswith("data:")]
        print(f"POST /v1/chat/stream: {len(events)} events, the last one {events[-1]!r}")


def main() -> int:
    # Run as a script, this file's folder is on sys.path, and the replay server sits beside it.
    from replay_server import ReplayServer

    from heliconetrace._cli import show

    records = Path(tempfile.mkdtemp(prefix="heliconetrace-fastapi-")) / "records.jsonl"
    # api_key=None overrides HELICONE_API_KEY, so the demo never sends to a real Helicone.
    heliconetrace.configure(api_key=None, log_file=records)
    with ReplayServer() as gateway:
        asyncio.run(send_requests(create_app(gateway.url, "sk-replay-not-a-secret")))
    if not heliconetrace.flush(10.0):
        print("heliconetrace did not finish writing records in 10 seconds", file=sys.stderr)
        return 1
    print(f"\nWhat heliconetrace logged (python -m heliconetrace show {records}):\n")
    show(records, limit=10, output=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
