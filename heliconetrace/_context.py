"""Context variables for the current span and the bound metadata, and `bind()`.

Each asyncio task and each thread has its own context, so values bound in one request never
reach a sibling request. Python copies the context into a new task, but not into a thread pool
worker: see docs/integrations.md, section "Threads".
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Final, NamedTuple

from heliconetrace._metadata import EMPTY, Metadata, metadata_from_options

if TYPE_CHECKING:
    from heliconetrace._span import Span


class Scope(NamedTuple):
    """The state of a context: the open span (if any) and the bound metadata.

    Both live in one context variable, so opening a span costs one `set` and one `reset`.
    """

    span: Span | None
    metadata: Metadata


SCOPE: Final[contextvars.ContextVar[Scope]] = contextvars.ContextVar(
    "heliconetrace_scope",
    default=Scope(None, EMPTY),  # noqa: B039 - a named tuple of immutable values
)


def execution_unit() -> tuple[int, object]:
    """Identify what runs now: the thread, and the asyncio task (None outside any task).

    A thread or task that received a copy of a context sees the same span as its parent, so
    this tells the span's own code from a copy's.
    """
    loop = asyncio._get_running_loop()
    task = asyncio.current_task(loop) if loop is not None else None
    return threading.get_ident(), task


def current_span() -> Span | None:
    """Return the span of the handler running now, or None outside any span."""
    return SCOPE.get().span


def bound_metadata() -> Metadata:
    """Return the metadata bound in this context by `bind()` and enclosing spans."""
    return SCOPE.get().metadata


class Binding:
    """The result of `bind()`: already in effect, and a `with` block that undoes it on exit."""

    __slots__ = ("_previous", "_token")

    def __init__(self, metadata: Metadata) -> None:
        self._previous = SCOPE.get()
        span = self._previous.span
        merged = self._previous.metadata.merged(metadata)
        self._token: contextvars.Token[Scope] | None = SCOPE.set(Scope(span, merged))

        # A span that is open here takes the new values too: a handler often learns the user
        # only after authenticating, inside its own span. A thread or task that was handed a
        # copy of the span's context binds for itself, not for the span.
        if span is not None and span.owner == execution_unit():
            span.update_metadata(metadata)

    def __enter__(self) -> Binding:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.unbind()

    def unbind(self) -> None:
        """Restore the metadata bound before this binding; a second call does nothing."""
        token, self._token = self._token, None
        if token is None:
            return
        try:
            SCOPE.reset(token)
        except ValueError:
            # The binding is undone in another context than the one it was made in (a thread or
            # task that received a copy). Restoring the old value there is the closest equivalent.
            SCOPE.set(self._previous)


def bind(**metadata: object) -> Binding:
    """Bind metadata for the rest of this context, or for a `with` block.

    Accepts the same options as `helicone_span()`: model, provider, user, session_id,
    session_path, session_name, properties, virtual_key and name. Spans opened later in this
    context, and the span open now, carry these values.
    """
    return Binding(metadata_from_options(metadata))
