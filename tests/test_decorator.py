"""@helicone_logged on every kind of callable: what the wrapper looks like and what it logs."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from pydantic import BaseModel

import heliconetrace
from heliconetrace import current_span, helicone_logged
from tests.helicone_schema import assert_valid_record
from tests.receiver import HeliconeReceiver

REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
RESPONSE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def one_record(helicone: HeliconeReceiver) -> dict[str, Any]:
    assert heliconetrace.flush(5.0)
    records = helicone.wait_for(1)
    assert len(records) == 1
    assert_valid_record(records[0])
    return records[0]


class TestWrapperShape:
    def test_keeps_metadata_of_sync_function(self) -> None:
        """The wrapper keeps the name, docstring, signature and __wrapped__."""

        def chat(body: dict[str, Any], *, user: str = "anon") -> dict[str, Any]:
            """Answer a chat."""
            return body

        wrapped = helicone_logged(chat)
        assert wrapped.__name__ == "chat"
        assert wrapped.__doc__ == "Answer a chat."
        assert inspect.signature(wrapped) == inspect.signature(chat)
        assert wrapped.__wrapped__ is chat  # type: ignore[attr-defined]

    def test_keeps_kind_of_each_function(self) -> None:
        """The wrapper of each function kind reports the same kind to inspect."""

        def plain() -> None:
            return None

        async def coroutine() -> None:
            return None

        def generator() -> Any:
            yield 1

        async def async_generator() -> Any:
            yield 1

        for function in (plain, coroutine, generator, async_generator):
            wrapped = helicone_logged(function)
            assert inspect.iscoroutinefunction(wrapped) == inspect.iscoroutinefunction(function)
            assert inspect.isgeneratorfunction(wrapped) == inspect.isgeneratorfunction(function)
            assert inspect.isasyncgenfunction(wrapped) == inspect.isasyncgenfunction(function)

    def test_passes_caller_keyword_arguments(self) -> None:
        """Keyword arguments named like options reach the handler untouched."""

        @helicone_logged(model="gpt-4o")
        def handler(**kwargs: Any) -> dict[str, Any]:
            return kwargs

        arguments = {"model": "other", "user": "u", "name": "n", "properties": {}}
        assert handler(**arguments) == arguments

    def test_rejects_bad_option_at_decoration(self) -> None:
        """An invalid option raises when decorating, naming the value."""
        with pytest.raises(heliconetrace.MetadataError, match="bad name"):
            helicone_logged(properties={"bad name": "x"})

    def test_rejects_unknown_request_arg(self) -> None:
        """request_arg must name a parameter of the handler."""
        with pytest.raises(TypeError, match="'payload' is not a parameter"):

            @helicone_logged(request_arg="payload")
            def handler(body: dict[str, Any]) -> None:
                return None


class TestFunctionKinds:
    def test_sync_function_logs_request_and_response(self, helicone: HeliconeReceiver) -> None:
        """A sync handler's request argument and return value reach Helicone."""

        @helicone_logged
        def chat(body: dict[str, Any]) -> dict[str, Any]:
            return RESPONSE

        assert chat(REQUEST) == RESPONSE
        record = one_record(helicone)
        assert record["providerRequest"]["json"] == REQUEST
        assert record["providerResponse"]["json"] == RESPONSE
        assert record["providerResponse"]["status"] == 200

    def test_async_function_logs_response(self, helicone: HeliconeReceiver) -> None:
        """An async handler is logged when its coroutine finishes."""

        @helicone_logged
        async def chat(body: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(0)
            return RESPONSE

        assert asyncio.run(chat(REQUEST)) == RESPONSE
        record = one_record(helicone)
        assert record["providerResponse"]["json"] == RESPONSE

    def test_generator_logs_yielded_text(self, helicone: HeliconeReceiver) -> None:
        """A generator handler becomes a stream record once it is exhausted."""

        @helicone_logged(model="gpt-4o-mini")
        def chat(body: dict[str, Any]) -> Any:
            yield "Hel"
            yield "lo"

        assert list(chat(REQUEST)) == ["Hel", "lo"]
        record = one_record(helicone)
        assert record["providerRequest"]["json"]["stream"] is True
        content = record["providerResponse"]["json"]["choices"][0]["message"]["content"]
        assert content == "Hello"

    def test_async_generator_logs_yielded_text(self, helicone: HeliconeReceiver) -> None:
        """An async generator handler becomes a stream record once it is exhausted."""

        @helicone_logged(model="gpt-4o-mini")
        async def chat(body: dict[str, Any]) -> Any:
            yield "Hel"
            await asyncio.sleep(0)
            yield "lo"

        async def consume() -> list[str]:
            return [item async for item in chat(REQUEST)]

        assert asyncio.run(consume()) == ["Hel", "lo"]
        record = one_record(helicone)
        content = record["providerResponse"]["json"]["choices"][0]["message"]["content"]
        assert content == "Hello"
        assert record["timing"]["timeToFirstToken"] >= 0

    def test_method_and_classmethod_and_staticmethod(self, helicone: HeliconeReceiver) -> None:
        """Methods, classmethods and staticmethods work in either stacking order."""

        class Service:
            @helicone_logged
            def method(self, body: dict[str, Any]) -> dict[str, Any]:
                return {"kind": "method"}

            @helicone_logged
            @classmethod
            def class_outer(cls, body: dict[str, Any]) -> dict[str, Any]:
                return {"kind": "class_outer"}

            @classmethod
            @helicone_logged
            def class_inner(cls, body: dict[str, Any]) -> dict[str, Any]:
                return {"kind": "class_inner"}

            @helicone_logged
            @staticmethod
            def static_outer(body: dict[str, Any]) -> dict[str, Any]:
                return {"kind": "static_outer"}

            @staticmethod
            @helicone_logged
            def static_inner(body: dict[str, Any]) -> dict[str, Any]:
                return {"kind": "static_inner"}

        service = Service()
        results = [
            service.method(REQUEST),
            Service.class_outer(REQUEST),
            Service.class_inner(REQUEST),
            Service.static_outer(REQUEST),
            service.static_inner(REQUEST),
        ]
        assert [result["kind"] for result in results] == [
            "method",
            "class_outer",
            "class_inner",
            "static_outer",
            "static_inner",
        ]
        assert heliconetrace.flush(5.0)
        records = helicone.wait_for(5)
        kinds = sorted(record["providerResponse"]["json"]["kind"] for record in records)
        assert kinds == sorted(result["kind"] for result in results)
        names = {
            record["providerRequest"]["meta"]["Helicone-Property-Span-Name"] for record in records
        }
        assert any(name.endswith("<locals>.Service.method") for name in names)


class TestCapture:
    def test_pydantic_request_and_response(self, helicone: HeliconeReceiver) -> None:
        """Pydantic models are captured as their JSON dump."""

        class ChatRequest(BaseModel):
            model: str
            prompt: str

        class ChatResponse(BaseModel):
            text: str

        @helicone_logged
        def chat(tenant: str, body: ChatRequest) -> ChatResponse:
            return ChatResponse(text="ok")

        chat("acme", ChatRequest(model="m1", prompt="p"))
        record = one_record(helicone)
        assert record["providerRequest"]["json"] == {"model": "m1", "prompt": "p"}
        assert record["providerResponse"]["json"] == {"text": "ok"}

    def test_request_arg_names_the_request(self, helicone: HeliconeReceiver) -> None:
        """request_arg picks an argument that has no model key."""

        @helicone_logged(request_arg="payload", model="m2")
        def chat(other: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
            return {}

        chat({"model": "decoy"}, payload={"messages": []})
        record = one_record(helicone)
        assert record["providerRequest"]["json"] == {"messages": [], "model": "m2"}

    def test_request_extractor_builds_the_request(self, helicone: HeliconeReceiver) -> None:
        """request_extractor receives the call's arguments."""

        @helicone_logged(request_extractor=lambda prompt, model: {"model": model, "prompt": prompt})
        def complete(prompt: str, model: str) -> dict[str, Any]:
            return {}

        complete("hi", model="m3")
        record = one_record(helicone)
        assert record["providerRequest"]["json"] == {"model": "m3", "prompt": "hi"}

    def test_set_request_and_response_replace_capture(self, helicone: HeliconeReceiver) -> None:
        """current_span().set_request/set_response win over the captured values."""

        @helicone_logged
        def chat(body: dict[str, Any]) -> dict[str, Any]:
            span = current_span()
            assert span is not None
            span.set_request({"model": "real", "messages": []}, url="https://gateway.test/v1")
            span.set_response({"real": True}, status=201, headers={"x-request-id": "abc"})
            return {"returned": True}

        chat(REQUEST)
        record = one_record(helicone)
        assert record["providerRequest"]["json"] == {"model": "real", "messages": []}
        assert record["providerRequest"]["url"] == "https://gateway.test/v1"
        assert record["providerResponse"]["json"] == {"real": True}
        assert record["providerResponse"]["status"] == 201
        assert record["providerResponse"]["headers"] == {"x-request-id": "abc"}

    def test_record_frozen_at_span_end(self, helicone: HeliconeReceiver) -> None:
        """Changing the returned dict after the call does not change the record."""

        @helicone_logged
        def chat(body: dict[str, Any]) -> dict[str, Any]:
            return {"choices": [{"text": "original"}]}

        result = chat(REQUEST)
        result["choices"][0]["text"] = "changed"
        result["added"] = True
        record = one_record(helicone)
        assert record["providerResponse"]["json"] == {"choices": [{"text": "original"}]}

    def test_string_response_goes_to_text_body(self, helicone: HeliconeReceiver) -> None:
        """A str return value is logged as textBody with an empty json object."""

        @helicone_logged(model="m")
        def chat(body: dict[str, Any]) -> str:
            return "plain answer"

        chat(REQUEST)
        record = one_record(helicone)
        assert record["providerResponse"]["textBody"] == "plain answer"
        assert record["providerResponse"]["json"] == {}


class TestFailures:
    def test_exception_reraised_and_recorded(self, helicone: HeliconeReceiver) -> None:
        """An exception propagates unchanged and the record has status 500."""
        error = ValueError("provider exploded")

        @helicone_logged
        def chat(body: dict[str, Any]) -> dict[str, Any]:
            raise error

        with pytest.raises(ValueError) as caught:
            chat(REQUEST)
        assert caught.value is error
        record = one_record(helicone)
        assert record["providerResponse"]["status"] == 500
        assert record["providerResponse"]["json"]["error"]["message"] == "provider exploded"
        assert record["providerResponse"]["json"]["error"]["type"] == "ValueError"

    def test_http_status_of_exception_recorded(self, helicone: HeliconeReceiver) -> None:
        """An exception carrying an HTTP status (httpx) logs that status."""
        import httpx

        @helicone_logged
        def chat(body: dict[str, Any]) -> dict[str, Any]:
            request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
            response = httpx.Response(429, request=request)
            raise httpx.HTTPStatusError("rate limited", request=request, response=response)

        with pytest.raises(httpx.HTTPStatusError):
            chat(REQUEST)
        assert one_record(helicone)["providerResponse"]["status"] == 429

    def test_secret_in_exception_message_masked(self, helicone: HeliconeReceiver) -> None:
        """A provider key inside an exception message never reaches the record."""

        @helicone_logged
        def chat(body: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("Incorrect API key provided: sk-proj-abcdefghijklmnop1234")

        with pytest.raises(RuntimeError):
            chat(REQUEST)
        assert heliconetrace.flush(5.0)
        raw = helicone.requests[0].body
        assert b"abcdefghijklmnop1234" not in raw
        assert b"sk-[REDACTED]" in raw

    def test_cancelled_coroutine_recorded(self, helicone: HeliconeReceiver) -> None:
        """A cancelled async handler is logged with Helicone's cancelled status -3."""
        started = asyncio.Event()

        @helicone_logged
        async def chat(body: dict[str, Any]) -> dict[str, Any]:
            started.set()
            await asyncio.sleep(30)
            return {}

        async def run() -> None:
            task = asyncio.create_task(chat(REQUEST))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(run())
        record = one_record(helicone)
        assert record["providerResponse"]["status"] == -3
        assert record["providerRequest"]["meta"]["Helicone-Property-End-Reason"] == "cancelled"
