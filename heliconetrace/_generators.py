"""Wrappers for generator and async generator handlers.

Life of a decorated generator::

    caller: gen = handler(...)      nothing runs yet, no span
    caller: next(gen)               span starts; the body runs in the span's own context
    body:   yield item              item recorded; the caller's context is back
    caller: gen.send(x) / throw(e)  passed to the body, in the span's context again
    end:    return / raise / close() / break / cancel / garbage collection
                                    span ends exactly once, with what streamed so far

The body runs in a context of its own, copied when it starts and entered for each step, so
bound metadata and `current_span()` reach the body and never the consumer between items. The
async wrapper steps the body's awaitables itself instead of creating a task per item, so the
body runs in the consumer's task (`asyncio.current_task()` and `asyncio.timeout` behave as
without the decorator).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any

from heliconetrace._context import SCOPE, Scope, execution_unit
from heliconetrace._span import END_CANCELLED, END_CLOSED, Span


def _enter(span: Span) -> None:
    # NOTE: the span belongs to the thread and task of the first step. While another thread or
    # task advances the body, a bind() there binds for the body only, not for the record.
    span.owner = execution_unit()
    SCOPE.set(Scope(span, span.metadata))


def span_context(span: Span) -> contextvars.Context:
    """Copy the current context and make `span` current in the copy."""
    context = contextvars.copy_context()
    context.run(_enter, span)
    return context


StartSpan = Callable[[tuple[Any, ...], dict[str, Any]], "Span | None"]


def wrap_generator_function(
    function: Callable[..., Generator[Any, Any, Any]], start: StartSpan
) -> Callable[..., Generator[Any, Any, Any]]:
    """Return a generator function that runs `function`'s generators inside a span each."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        generator = function(*args, **kwargs)
        span = start(args, kwargs)
        if span is None:
            return (yield from generator)

        context = span_context(span)
        record_item = span.stream_recorder().add
        step: Callable[..., Any] = generator.send
        argument: Any = None
        try:
            while True:
                try:
                    item = context.run(step, argument)
                except StopIteration as stop:
                    return stop.value
                except BaseException as error:
                    span.fail(error)
                    raise

                record_item(item)
                try:
                    argument = yield item
                    step = generator.send
                except GeneratorExit:
                    span.cancel(END_CLOSED)
                    context.run(generator.close)
                    raise
                except BaseException as error:
                    step, argument = generator.throw, error
        finally:
            span.end()

    return wrapper


class _StepInContext:
    """Await `awaitable` with each of its steps run inside `context`, in the current task."""

    __slots__ = ("_awaitable", "_context")

    def __init__(self, awaitable: Awaitable[Any], context: contextvars.Context) -> None:
        self._awaitable = awaitable
        self._context = context

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine: Any = self._awaitable.__await__()
        run = self._context.run
        step: Callable[..., Any] = coroutine.send
        argument: Any = None
        while True:
            try:
                yielded = run(step, argument)
            except StopIteration as stop:
                return stop.value
            try:
                argument = yield yielded
                step = coroutine.send
            except BaseException as error:
                step, argument = coroutine.throw, error


def wrap_async_generator_function(
    function: Callable[..., AsyncGenerator[Any, Any]], start: StartSpan
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """Return an async generator function that runs `function`'s generators inside a span each.

    `asend`, `athrow` and `aclose` reach the handler's generator with the same values and
    exceptions, also when logging is off.
    """

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        generator = function(*args, **kwargs)
        span = start(args, kwargs)
        context = span_context(span) if span is not None else None
        record_item = span.stream_recorder().add if span is not None else None

        def step_in_context(awaitable: Awaitable[Any]) -> Awaitable[Any]:
            return awaitable if context is None else _StepInContext(awaitable, context)

        argument: Any = None
        error_to_throw: BaseException | None = None
        try:
            while True:
                try:
                    if error_to_throw is None:
                        item = await step_in_context(generator.asend(argument))
                    else:
                        thrown, error_to_throw = error_to_throw, None
                        item = await step_in_context(generator.athrow(thrown))
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError as error:
                    if span is not None:
                        span.cancel(END_CANCELLED, error)
                    raise
                except BaseException as error:
                    if span is not None:
                        span.fail(error)
                    raise

                if record_item is not None:
                    record_item(item)
                try:
                    argument = yield item
                except GeneratorExit:
                    if span is not None:
                        span.cancel(END_CLOSED)
                    await step_in_context(generator.aclose())
                    raise
                except BaseException as error:
                    error_to_throw = error
        finally:
            if span is not None:
                span.end()

    return wrapper
