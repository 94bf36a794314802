"""`@helicone_logged`: one span, and so one record, per call of a handler.

The wrapper has the handler's signature, name, docstring and kind (coroutine function, generator
function, async generator function), and the same static type. It adds no parameters and takes
none of the caller's arguments: options go to the decorator, never to the call.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from heliconetrace._capture import ArgumentPicker, RequestExtractor, find_request
from heliconetrace._config import SETTINGS
from heliconetrace._context import SCOPE
from heliconetrace._diagnostics import internal_error
from heliconetrace._generators import wrap_async_generator_function, wrap_generator_function
from heliconetrace._metadata import Metadata, metadata_from_options
from heliconetrace._returned_streams import NOT_A_STREAM, STREAM_KINDS, adopt_returned_stream
from heliconetrace._scope import activate, deactivate, record_exit
from heliconetrace._span import Span

F = TypeVar("F", bound=Callable[..., Any])
RequestPicker = Callable[[tuple[Any, ...], Mapping[str, Any]], object]


def _request_picker(
    function: Callable[..., Any],
    request_arg: str | None,
    request_extractor: RequestExtractor | None,
) -> RequestPicker:
    if request_arg is not None and request_extractor is not None:
        raise TypeError("Pass request_arg or request_extractor, not both.")
    if request_extractor is not None:
        if not callable(request_extractor):
            raise TypeError(
                f"request_extractor={request_extractor!r} is not callable; pass a function that "
                "takes the handler's arguments and returns the request."
            )
        extractor = request_extractor
        return lambda args, kwargs: extractor(*args, **kwargs)
    if request_arg is not None:
        return ArgumentPicker(function, request_arg)
    return find_request


class _Instrumentation:
    """The state every wrapper of one handler shares: its metadata and its request picker."""

    __slots__ = ("metadata", "pick_request")

    def __init__(self, metadata: Metadata, pick_request: RequestPicker) -> None:
        self.metadata = metadata
        self.pick_request = pick_request

    def start(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Span | None:
        """Create the span for one call; None when logging is off or the toolkit failed."""
        if not SETTINGS.get().enabled:
            return None
        try:
            # new_span(), inlined: this runs for every call.
            scope = SCOPE.get()
            span = Span(scope.metadata.merged(self.metadata), parent=scope.span)
            span.capture_request(self.pick_request(args, kwargs))
        except Exception as error:
            internal_error("decorator.start", error)
            return None
        return span


def _adopted(result: object, span: Span) -> bool:
    """Let a returned stream end the span when it ends; False when `result` is no stream."""
    if STREAM_KINDS.get(type(result)) == NOT_A_STREAM:
        return False
    try:
        return adopt_returned_stream(result, span)
    except Exception as error:
        internal_error("decorator.adopt_stream", error)
        return False


def _wrap_function(function: Callable[..., Any], tool: _Instrumentation) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        span = tool.start(args, kwargs)
        if span is None:
            return function(*args, **kwargs)
        token = activate(span)
        try:
            result = function(*args, **kwargs)
        except BaseException as error:
            deactivate(token)
            record_exit(span, error)
            span.end()
            raise
        deactivate(token)
        if not _adopted(result, span):
            span.capture_response(result)
            span.end()
        return result

    return wrapper


def _wrap_coroutine_function(
    function: Callable[..., Any], tool: _Instrumentation
) -> Callable[..., Any]:
    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        span = tool.start(args, kwargs)
        if span is None:
            return await function(*args, **kwargs)
        token = activate(span)
        try:
            result = await function(*args, **kwargs)
        except BaseException as error:
            deactivate(token)
            record_exit(span, error)
            span.end()
            raise
        deactivate(token)
        if not _adopted(result, span):
            span.capture_response(result)
            span.end()
        return result

    return wrapper


def _decorate(function: Any, options: Metadata, request_arg: Any, extractor: Any) -> Any:
    if isinstance(function, staticmethod):
        return staticmethod(_decorate(function.__func__, options, request_arg, extractor))
    if isinstance(function, classmethod):
        return classmethod(_decorate(function.__func__, options, request_arg, extractor))
    if not callable(function):
        raise TypeError(
            f"@helicone_logged decorates functions and methods, not {type(function).__name__}."
        )

    default_name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    metadata = Metadata(name=default_name).merged(options)
    tool = _Instrumentation(metadata, _request_picker(function, request_arg, extractor))

    if inspect.isasyncgenfunction(function):
        return wrap_async_generator_function(function, tool.start)
    if inspect.isgeneratorfunction(function):
        return wrap_generator_function(function, tool.start)
    if inspect.iscoroutinefunction(function) or asyncio.iscoroutinefunction(function):
        return _wrap_coroutine_function(function, tool)
    return _wrap_function(function, tool)


@overload
def helicone_logged(function: F, /) -> F: ...


@overload
def helicone_logged(
    *,
    model: str | None = None,
    provider: str | None = None,
    user: str | int | None = None,
    session_id: str | None = None,
    session_path: str | None = None,
    session_name: str | None = None,
    properties: dict[str, str | int | float | bool] | None = None,
    virtual_key: str | None = None,
    name: str | None = None,
    request_arg: str | None = None,
    request_extractor: RequestExtractor | None = None,
) -> Callable[[F], F]: ...


def helicone_logged(
    function: Any = None,
    /,
    *,
    model: str | None = None,
    provider: str | None = None,
    user: str | int | None = None,
    session_id: str | None = None,
    session_path: str | None = None,
    session_name: str | None = None,
    properties: dict[str, str | int | float | bool] | None = None,
    virtual_key: str | None = None,
    name: str | None = None,
    request_arg: str | None = None,
    request_extractor: RequestExtractor | None = None,
) -> Any:
    """Log every call of the decorated handler to Helicone, in the background.

    Use it bare (`@helicone_logged`) or with options (`@helicone_logged(model="gpt-4o")`).
    Options are checked here, at decoration time, and a bad one raises `MetadataError`.

    Request: the first argument that is a mapping with a "model" key or a pydantic model with a
    `model` field; else, for a call made the way SDK methods are (a string `model=` keyword and
    one of `messages=`, `input=`, `prompt=`, `max_tokens=`), its JSON-like keyword arguments.
    `request_arg` names the argument instead, or `request_extractor(*args, **kwargs)` returns it.

    Response: the return value (a mapping, a pydantic model or an object with `model_dump()`),
    or the items a generator yields. An exception marks the record failed and
    propagates unchanged.
    """
    options = metadata_from_options(
        {
            "model": model,
            "provider": provider,
            "user": user,
            "session_id": session_id,
            "session_path": session_path,
            "session_name": session_name,
            "properties": properties,
            "virtual_key": virtual_key,
            "name": name,
        }
    )
    if function is None:
        return lambda decorated: _decorate(decorated, options, request_arg, request_extractor)
    return _decorate(function, options, request_arg, request_extractor)
