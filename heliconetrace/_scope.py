"""Opening and closing spans in the current context, and `helicone_span()`.

A span open in a context is the current span there, and its metadata is the bound metadata
there, so spans opened inside it inherit its values.
"""

from __future__ import annotations

import asyncio
import contextvars
from asyncio import current_task
from asyncio.events import _get_running_loop
from threading import get_ident
from types import TracebackType

from heliconetrace._context import SCOPE, Scope
from heliconetrace._metadata import Metadata, metadata_from_options
from heliconetrace._span import END_CANCELLED, Span, check_request_id

SpanToken = contextvars.Token[Scope]


def new_span(metadata: Metadata, request_id: str | None = None) -> Span:
    """Create a span under the current one, with the bound metadata overridden by `metadata`."""
    scope = SCOPE.get()
    return Span(scope.metadata.merged(metadata), request_id=request_id, parent=scope.span)


def activate(span: Span) -> SpanToken:
    """Make `span` current in this context; undo with `deactivate()` in the same context."""
    # execution_unit(), inlined: this runs for every call.
    loop = _get_running_loop()
    span.owner = (get_ident(), current_task(loop) if loop is not None else None)
    return SCOPE.set(Scope(span, span.metadata))


def deactivate(token: SpanToken) -> None:
    # try/except rather than contextlib.suppress: this runs for every handled call, and the
    # context manager costs several times more.
    try:  # noqa: SIM105
        SCOPE.reset(token)
    except ValueError:
        # The block ended in another context than it started in (a copy made for a thread or
        # task). That context is not ours to restore, and the span ends all the same.
        pass


def record_exit(span: Span, error: BaseException | None) -> None:
    """Record how the span's block ended: normally, cancelled, or with an exception."""
    if error is None:
        return
    if isinstance(error, asyncio.CancelledError):
        span.cancel(END_CANCELLED, error)
    else:
        span.fail(error)


class SpanScope:
    """The `with` / `async with` block returned by `helicone_span()`."""

    __slots__ = ("_metadata", "_request_id", "_span", "_token")

    def __init__(self, metadata: Metadata, request_id: str | None) -> None:
        self._metadata = metadata
        self._request_id = request_id
        self._span: Span | None = None
        self._token: SpanToken | None = None

    def __enter__(self) -> Span:
        if self._span is not None:
            raise RuntimeError("A helicone_span() block cannot be entered twice; make a new one.")
        span = self._span = new_span(self._metadata, self._request_id)
        self._token = activate(span)
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span, token = self._span, self._token
        if span is None or token is None:
            return
        self._token = None
        deactivate(token)
        record_exit(span, exc)
        span.end()

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


def helicone_span(
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
    request_id: str | None = None,
) -> SpanScope:
    """Open a span for the block: `with helicone_span(model="gpt-4o") as span: ...`.

    Works as `async with` too. Inside the block, call `span.set_request(...)` and
    `span.set_response(...)`; the record is sent when the block ends. An exception that leaves
    the block marks the record failed and propagates unchanged.
    """
    metadata = metadata_from_options(
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
    checked_id = check_request_id(request_id) if request_id is not None else None
    return SpanScope(metadata, checked_id)
