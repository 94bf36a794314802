"""A chat service shaped like the ones heliconetrace is for.

The service takes chat requests from its own clients and forwards them to an OpenAI-compatible
gateway (Portkey style: one base URL, a virtual key naming the provider account, a user id per
request) with the `openai` SDK. Each handler is decorated with `@helicone_logged`, so every call
becomes one Helicone record, sent in the background while the service responds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from openai import AsyncOpenAI, OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from heliconetrace import bind, helicone_logged


class ChatService:
    """Forward chat requests to a gateway; log each one to Helicone."""

    def __init__(self, gateway_url: str, gateway_api_key: str, virtual_key: str) -> None:
        # The virtual key goes to the gateway as a header and to Helicone as a property.
        headers = {"x-portkey-virtual-key": virtual_key}
        self.virtual_key = virtual_key
        self.client = OpenAI(base_url=gateway_url, api_key=gateway_api_key, default_headers=headers)
        self.async_client = AsyncOpenAI(
            base_url=gateway_url, api_key=gateway_api_key, default_headers=headers
        )

    @helicone_logged(provider="openai", properties={"Service": "chat"})
    def chat(self, body: dict[str, Any], *, user: str) -> ChatCompletion:
        """Complete one chat request. `body` is the OpenAI request: model, messages, ..."""
        bind(user=user, virtual_key=self.virtual_key)
        return self.client.chat.completions.create(**body, user=user)

    @helicone_logged(provider="openai", properties={"Service": "chat"})
    async def chat_async(self, body: dict[str, Any], *, user: str) -> ChatCompletion:
        """Complete one chat request from async code, as an async web framework calls it."""
        bind(user=user, virtual_key=self.virtual_key)
        return await self.async_client.chat.completions.create(**body, user=user)

    @helicone_logged(provider="openai", properties={"Service": "chat-stream"})
    def chat_stream(self, body: dict[str, Any], *, user: str) -> Iterator[ChatCompletionChunk]:
        """Stream the answer chunk by chunk, as a service relaying SSE to its clients does.

        `body` should ask for `stream_options={"include_usage": True}`: without it the stream
        reports no token counts, and Helicone cannot compute the cost.
        """
        bind(user=user, virtual_key=self.virtual_key)
        yield from self.client.chat.completions.create(**body, user=user)

    @helicone_logged(provider="openai", properties={"Service": "chat-stream"})
    async def chat_stream_async(
        self, body: dict[str, Any], *, user: str
    ) -> AsyncIterator[ChatCompletionChunk]:
        """Stream the completion from async code."""
        bind(user=user, virtual_key=self.virtual_key)
        stream = await self.async_client.chat.completions.create(**body, user=user)
        async for chunk in stream:
            yield chunk
