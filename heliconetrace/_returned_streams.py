"""Handlers that return a stream instead of yielding: the span ends when the stream does.

A handler may return an openai or anthropic `Stream` / `AsyncStream`, or a Starlette (FastAPI)
`StreamingResponse`. Ending the span at return would log an empty response, so the stream's
item iterator is replaced, on the same object, by one that records each item and ends the span
when the stream is exhausted, fails or is closed. The caller keeps the object it expects.

A stream garbage-collected before anyone iterated it ends its span as "abandoned".
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

from heliconetrace._redact import safe_headers
from heliconetrace._sdk import safe_url
from heliconetrace._span import END_ABANDONED, END_CANCELLED, END_CLOSED, Span

_SDK_MODULES: Final = ("openai", "anthropic")
_STREAM_CLASSES: Final = frozenset({"Stream", "AsyncStream"})


_SDK_STREAM: Final = "sdk"
_STREAMING_RESPONSE: Final = "streaming-response"
NOT_A_STREAM: Final = ""

# The kind of each return type seen so far: the check runs for every value a handler returns.
STREAM_KINDS: Final[dict[type, str]] = {dict: "", list: "", str: "", type(None): ""}


def _stream_kind(value: object) -> str:
    cls = type(value)
    kind = STREAM_KINDS.get(cls)
    if kind is not None:
        return kind
    if any(
        base.__name__ in _STREAM_CLASSES and base.__module__.startswith(_SDK_MODULES)
        for base in cls.__mro__
    ):
        kind = _SDK_STREAM
    elif cls.__module__.startswith(("starlette.", "fastapi.")) and hasattr(value, "body_iterator"):
        kind = _STREAMING_RESPONSE
    else:
        kind = NOT_A_STREAM
    # NOTE: grows by one entry per distinct return type; handlers return few types.
    STREAM_KINDS[cls] = kind
    return kind


def _record_sync(iterator: Iterator[Any], span: Span) -> Iterator[Any]:
    record_item = span.stream_recorder().add
    try:
        for item in iterator:
            record_item(item)
            yield item
    except GeneratorExit:
        span.cancel(END_CLOSED)
        raise
    except BaseException as error:
        span.fail(error)
        raise
    finally:
        span.end()


async def _record_async(iterator: AsyncIterator[Any], span: Span) -> AsyncIterator[Any]:
    record_item = span.stream_recorder().add
    try:
        async for item in iterator:
            record_item(item)
            yield item
    except GeneratorExit:
        span.cancel(END_CLOSED)
        raise
    except asyncio.CancelledError as error:
        span.cancel(END_CANCELLED, error)
        raise
    except BaseException as error:
        span.fail(error)
        raise
    finally:
        span.end()


def _end_abandoned(span: Span) -> None:
    if not span.ended:
        span.cancel(END_ABANDONED)
        span.end()


def _capture_http_response(value: object, span: Span) -> None:
    """Keep the provider's response headers, status and request URL of an SDK stream."""
    response = getattr(value, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        span.capture_response_headers(safe_headers(headers))
    request = getattr(response, "request", None)
    url = getattr(request, "url", None)
    if url is not None:
        # Masked: a URL may carry credentials in its user part or query.
        span.capture_request_url(safe_url(str(url)))


def adopt_returned_stream(value: object, span: Span) -> bool:
    """End `span` when the stream `value` ends, if `value` is a stream; return whether it was.

    The object is changed in place: its item iterator is wrapped. Anything else returns False
    and the caller ends the span itself.
    """
    kind = _stream_kind(value)
    if kind == NOT_A_STREAM:
        return False
    if kind == _SDK_STREAM:
        is_async = hasattr(value, "__anext__")
        # Both SDKs iterate `_iterator` in `__iter__`/`__next__` and the async forms (read in
        # openai 3.63 and anthropic 2.17, where anthropic makes it on first access).
        # NOTE: a version without `_iterator` is not wrapped, so its span ends at return.
        original = getattr(value, "_iterator", None)
        if original is None:
            return False
        _capture_http_response(value, span)
        wrapped = _record_async(original, span) if is_async else _record_sync(original, span)
        value._iterator = wrapped  # type: ignore[attr-defined]
    else:
        original = value.body_iterator  # type: ignore[attr-defined]
        value.body_iterator = _record_async(original, span)  # type: ignore[attr-defined]

    weakref.finalize(value, _end_abandoned, span)
    return True
