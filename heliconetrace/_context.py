"""Context variables for the current span and the bound metadata, and `bind()`.

Each asyncio task and each thread has its own context, so values bound in one request never
reach a sibling request. Python copies the context into a new task, but not into a thread pool
worker: see the README's section on threads.
"""

from __future__ import annotations

import contextvars
from types import TracebackType
from typing import TYPE_CHECKING, Final

from heliconetrace._metadata import EMPTY, Metadata, metadata_from_options

if TYPE_CHECKING:
    from collections.abc import Mapping

    from heliconetrace._span import Span

CURRENT_SPAN: Final[contextvars.ContextVar[Span | None]] = contextvars.ContextVar(
    "heliconetrace_current_span", default=None
)
BOUND: Final[contextvars.ContextVar[Metadata]] = contextvars.ContextVar(
    "heliconetrace_bound_metadata", default=EMPTY
)


def current_span() -> Span | None:
    """Return the span of the handler running now, or None outside any span."""
    return CURRENT_SPAN.get()


def bound_metadata() -> Metadata:
    """Return the metadata bound in this context by `bind()` and enclosing spans."""
    return BOUND.get()


class Binding:
    """The result of `bind()`: already in effect, and a `with` block that undoes it on exit."""

    __slots__ = ("_previous", "_token")

    def __init__(self, metadata: Metadata) -> None:
        self._previous = BOUND.get()
        self._token: contextvars.Token[Metadata] | None = BOUND.set(self._previous.merged(metadata))

        # A span that is open here takes the new values too: a handler often learns the user
        # only after authenticating, inside its own span.
        span = CURRENT_SPAN.get()
        if span is not None:
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
            BOUND.reset(token)
        except ValueError:
            # The binding is undone in another context than the one it was made in (a thread or
            # task that received a copy). Restoring the old value there is the closest equivalent.
            BOUND.set(self._previous)


def bind(**metadata: object) -> Binding:
    """Bind metadata for the rest of this context, or for a `with` block.

    Accepts the same options as `helicone_span()`: model, provider, user, session_id,
    session_path, session_name, properties, virtual_key and name. Spans opened later in this
    context, and the span open now, carry these values.
    """
    return Binding(metadata_from_options(metadata))


def bind_metadata(metadata: Mapping[str, object]) -> Binding:
    """Like `bind()`, for options already collected in a mapping."""
    return Binding(metadata_from_options(metadata))
