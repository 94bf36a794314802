"""Carry the current span and the bound metadata into threads that Python starts without them.

A context variable set in one thread is not seen in another unless the code that hands the work
over copies the context. On CPython's default build, 3.10 to 3.14:

- copy it: `asyncio.to_thread`, `anyio.to_thread.run_sync` (so Starlette's `run_in_threadpool`
  and FastAPI's sync endpoints and dependencies), and `asyncio` task creation;
- do not copy it: `ThreadPoolExecutor.submit` and `.map`, `loop.run_in_executor`, and
  `threading.Thread`. A pool worker keeps its own context from one task to the next, so a
  `bind()` in one submitted function is still in effect for the next function on that worker.

`ContextThreadPoolExecutor` and `with_context()` cover the second list. Both copy the context in
the calling thread, when the work is handed over, so a span opened in the worker is a child of
the caller's current span and inherits its metadata.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A `ThreadPoolExecutor` that runs each submitted call in a copy of the submitter's context.

    `submit()` copies the context in the calling thread, at the call. `map()` submits each item
    through `submit()` from the calling thread, as `Executor.map` does, so each item gets its own
    copy too. What a call binds stays in its copy: it reaches neither the caller, nor other
    calls, nor later work on the same worker thread.
    """

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Schedule `fn(*args, **kwargs)` to run in a copy of the current context."""
        context = contextvars.copy_context()
        return super().submit(functools.partial(context.run, fn, *args, **kwargs))


def with_context(function: Callable[P, T]) -> Callable[P, T]:
    """Wrap `function` so that every call runs in a copy of the context current now.

    Use it where the receiving code does not copy the context itself, for example
    `threading.Thread(target=with_context(work))` or
    `loop.run_in_executor(None, with_context(work))`. The context is captured when
    `with_context()` is called, in the calling thread. Each call of the wrapper starts from a new
    copy of that context, so calls do not see each other's `bind()`, and two threads may call
    the wrapper at once.

    Raises TypeError for coroutine and generator functions: calling them only creates the
    coroutine or generator, which then runs outside the copied context. asyncio tasks copy the
    context by themselves.
    """
    if (
        inspect.iscoroutinefunction(function)
        or inspect.isgeneratorfunction(function)
        or inspect.isasyncgenfunction(function)
    ):
        raise TypeError(
            f"with_context() wraps plain functions, and {function!r} is a coroutine or generator "
            "function, whose body would run outside the copied context. Wrap a plain function "
            "that runs it to the end, or start it as an asyncio task, which copies the context."
        )
    context = contextvars.copy_context()

    @functools.wraps(function)
    def run_in_context(*args: P.args, **kwargs: P.kwargs) -> T:
        return context.copy().run(function, *args, **kwargs)

    return run_in_context
