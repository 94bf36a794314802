"""Spans and bound metadata across threads: what Python copies, and the helpers for what it does not.

Records carry no parent id, so "child of the caller's span" is checked twice: in process through
`Span.parent`, and in the record through the metadata the child inherits from its parent.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.to_thread
import pytest

import heliconetrace
from heliconetrace import (
    ContextThreadPoolExecutor,
    Span,
    bind,
    current_span,
    helicone_logged,
    helicone_span,
    with_context,
)
from heliconetrace._context import bound_metadata
from tests.helicone_schema import assert_valid_record
from tests.receiver import HeliconeReceiver

# How long a test waits for a thread or a barrier before it counts as hung.
WAIT = 10.0
# Python 3.14 added sys.flags.thread_inherit_context, on by default in free-threaded builds: a new
# thread, pool workers included, then starts with a copy of the starting thread's context.
THREADS_INHERIT_CONTEXT = bool(getattr(sys.flags, "thread_inherit_context", 0))
starts_with_empty_context = pytest.mark.skipif(
    THREADS_INHERIT_CONTEXT, reason="new threads start with a copy of the starter's context"
)

PARENT_OPTIONS: dict[str, Any] = {
    "name": "parent",
    "user": "alice",
    "session_id": "session-1",
    "properties": {"Team": "search"},
}


def records_by_name(helicone: HeliconeReceiver, count: int) -> dict[str, dict[str, Any]]:
    """Wait for `count` records and return them by span name, each validated."""
    assert heliconetrace.flush(WAIT)
    records = helicone.wait_for(count)
    assert len(records) == count
    result: dict[str, dict[str, Any]] = {}
    for record in records:
        assert_valid_record(record)
        result[record["providerRequest"]["meta"]["Helicone-Property-Span-Name"]] = record
    return result


def open_child(name: str = "child") -> tuple[Span | None, Span]:
    """Return the span current before a child span opens here, and the child span."""
    outer = current_span()
    with helicone_span(name=name) as child:
        pass
    return outer, child


def assert_inherits_parent(record: dict[str, Any]) -> None:
    """Check that a child's record carries PARENT_OPTIONS' user, session and property."""
    meta = record["providerRequest"]["meta"]
    assert meta["Helicone-User-Id"] == "alice"
    assert meta["Helicone-Session-Id"] == "session-1"
    assert meta["Helicone-Property-Team"] == "search"


def run_in_thread(target: Callable[[], Any]) -> Any:
    """Run `target` in a new threading.Thread and return its result."""
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(target()))
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    return results[0]


class TestContextThreadPoolExecutor:
    def test_submit_child_of_caller_span(self, helicone: HeliconeReceiver) -> None:
        """A span opened in a submitted call is a child of the submitter's current span."""
        with (
            helicone_span(**PARENT_OPTIONS) as parent,
            ContextThreadPoolExecutor(max_workers=2) as pool,
        ):
            outer, child = pool.submit(open_child).result(WAIT)
        assert outer is parent
        assert child.parent is parent
        assert_inherits_parent(records_by_name(helicone, 2)["child"])

    def test_map_child_of_caller_span(self, helicone: HeliconeReceiver) -> None:
        """Each call that map() runs gets the caller's span and opens children of it."""
        names = [f"child-{index}" for index in range(4)]
        with (
            helicone_span(**PARENT_OPTIONS) as parent,
            ContextThreadPoolExecutor(max_workers=2) as pool,
        ):
            results = list(pool.map(open_child, names, timeout=WAIT))
        for outer, child in results:
            assert outer is parent
            assert child.parent is parent
        records = records_by_name(helicone, 5)
        for name in names:
            assert_inherits_parent(records[name])

    def test_decorated_handler_in_pool(self, helicone: HeliconeReceiver) -> None:
        """A decorated handler submitted to the pool logs with the submitter's bound metadata."""

        @helicone_logged(name="pooled")
        def handler(body: dict[str, Any]) -> dict[str, Any]:
            return {"echo": body["model"]}

        with bind(user="bob", session_id="session-2"), ContextThreadPoolExecutor(1) as pool:
            pool.submit(handler, {"model": "gpt-4o-mini"}).result(WAIT)
        meta = records_by_name(helicone, 1)["pooled"]["providerRequest"]["meta"]
        assert meta["Helicone-User-Id"] == "bob"
        assert meta["Helicone-Session-Id"] == "session-2"

    def test_concurrent_submissions_keep_users(self, helicone: HeliconeReceiver) -> None:
        """Calls submitted under different bindings run at once and each logs its own user."""
        count = 6
        barrier = threading.Barrier(count)

        @helicone_logged
        def handler(index: int) -> dict[str, Any]:
            # All calls are inside their spans at the same time before any of them ends.
            barrier.wait(WAIT)
            return {"index": index}

        with ContextThreadPoolExecutor(max_workers=count) as pool:
            futures = []
            for index in range(count):
                with bind(user=f"user-{index}", properties={"Index": index}):
                    futures.append(pool.submit(handler, index))
            for future in futures:
                future.result(WAIT)

        assert heliconetrace.flush(WAIT)
        records = helicone.wait_for(count)
        for record in records:
            assert_valid_record(record)
            index = record["providerResponse"]["json"]["index"]
            meta = record["providerRequest"]["meta"]
            assert meta["Helicone-User-Id"] == f"user-{index}"
            assert meta["Helicone-Property-Index"] == str(index)

    def test_context_captured_at_submit(self, helicone: HeliconeReceiver) -> None:
        """The context is copied when submit() is called, not when the worker starts the call."""
        release = threading.Event()
        with ContextThreadPoolExecutor(max_workers=1) as pool:
            # The only worker is busy until `release` is set, so the next call waits in the queue.
            blocker = pool.submit(release.wait, WAIT)
            with bind(user="at-submit"):
                queued = pool.submit(open_child, "queued")
            bind(user="after-submit")
            release.set()
            assert blocker.result(WAIT) is True
            queued.result(WAIT)
        meta = records_by_name(helicone, 1)["queued"]["providerRequest"]["meta"]
        assert meta["Helicone-User-Id"] == "at-submit"

    def test_bind_stays_in_its_call(self) -> None:
        """A bind() inside a submitted call reaches neither the caller nor the next call."""

        def bind_user() -> None:
            bind(user="inside-call")

        with ContextThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(bind_user).result(WAIT)
            seen_by_next_call = pool.submit(bound_metadata).result(WAIT)
        assert seen_by_next_call.user is None
        assert bound_metadata().user is None

    def test_run_in_executor_with_pool(self, helicone: HeliconeReceiver) -> None:
        """loop.run_in_executor() with this pool runs the function in the awaiting task's context."""

        async def main() -> tuple[Span, tuple[Span | None, Span]]:
            loop = asyncio.get_running_loop()
            with ContextThreadPoolExecutor(max_workers=1) as pool:
                async with helicone_span(**PARENT_OPTIONS) as parent:
                    return parent, await loop.run_in_executor(pool, open_child)

        parent, (outer, child) = asyncio.run(main())
        assert outer is parent
        assert child.parent is parent
        assert_inherits_parent(records_by_name(helicone, 2)["child"])

    def test_default_executor_of_loop(self, helicone: HeliconeReceiver) -> None:
        """As the loop's default executor, it makes run_in_executor(None, ...) copy the context."""

        async def main() -> tuple[Span, tuple[Span | None, Span]]:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(ContextThreadPoolExecutor(max_workers=1))
            async with helicone_span(**PARENT_OPTIONS) as parent:
                return parent, await loop.run_in_executor(None, open_child)

        parent, (outer, child) = asyncio.run(main())
        assert outer is parent
        assert child.parent is parent
        assert_inherits_parent(records_by_name(helicone, 2)["child"])

    def test_is_a_thread_pool_executor(self) -> None:
        """The pool is a ThreadPoolExecutor, so it fits where one is expected."""
        with ContextThreadPoolExecutor(max_workers=1, thread_name_prefix="helicone-test") as pool:
            assert isinstance(pool, ThreadPoolExecutor)
            name = pool.submit(lambda: threading.current_thread().name).result(WAIT)
        assert name.startswith("helicone-test")


class TestWithContext:
    def test_thread_target_child_of_span(self, helicone: HeliconeReceiver) -> None:
        """A Thread target wrapped with with_context() opens children of the caller's span."""
        with helicone_span(**PARENT_OPTIONS) as parent:
            outer, child = run_in_thread(with_context(open_child))
        assert outer is parent
        assert child.parent is parent
        assert_inherits_parent(records_by_name(helicone, 2)["child"])

    def test_context_captured_at_wrap(self, helicone: HeliconeReceiver) -> None:
        """The context is the one current when with_context() was called."""
        with bind(user="at-wrap"):
            target = with_context(open_child)
        bind(user="at-start")
        run_in_thread(lambda: target("wrapped"))
        meta = records_by_name(helicone, 1)["wrapped"]["providerRequest"]["meta"]
        assert meta["Helicone-User-Id"] == "at-wrap"

    def test_each_call_starts_fresh(self) -> None:
        """What one call of the wrapper binds is not seen by its next call."""

        def bind_and_report(user: str) -> str | None:
            before = bound_metadata().user
            bind(user=user)
            return before

        with bind(user="captured"):
            wrapped = with_context(bind_and_report)
        assert wrapped("first") == "captured"
        assert wrapped("second") == "captured"

    def test_concurrent_calls_of_one_wrapper(self, helicone: HeliconeReceiver) -> None:
        """Several threads may run one wrapped function at once, each logging its own user."""
        count = 4
        barrier = threading.Barrier(count)

        def work(index: int) -> None:
            bind(user=f"thread-{index}")
            with helicone_span(name=f"work-{index}"):
                barrier.wait(WAIT)

        with bind(session_id="shared-session"):
            target = with_context(work)
        threads = [threading.Thread(target=target, args=(index,)) for index in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        records = records_by_name(helicone, count)
        for index in range(count):
            meta = records[f"work-{index}"]["providerRequest"]["meta"]
            assert meta["Helicone-User-Id"] == f"thread-{index}"
            assert meta["Helicone-Session-Id"] == "shared-session"

    def test_run_in_executor_default_pool(self, helicone: HeliconeReceiver) -> None:
        """loop.run_in_executor(None, with_context(fn)) runs fn in the awaiting task's context."""

        async def main() -> tuple[Span, tuple[Span | None, Span]]:
            loop = asyncio.get_running_loop()
            async with helicone_span(**PARENT_OPTIONS) as parent:
                return parent, await loop.run_in_executor(None, with_context(open_child))

        parent, (outer, child) = asyncio.run(main())
        assert outer is parent
        assert child.parent is parent
        assert_inherits_parent(records_by_name(helicone, 2)["child"])

    def test_keeps_name_and_doc(self) -> None:
        """The wrapper has the wrapped function's name and docstring."""

        def work() -> None:
            """Do the work."""

        wrapped = with_context(work)
        assert wrapped.__name__ == "work"
        assert wrapped.__doc__ == "Do the work."

    @pytest.mark.parametrize("kind", ["coroutine", "generator", "async generator"])
    def test_rejects_non_plain_function(self, kind: str) -> None:
        """Coroutine and generator functions raise TypeError, since their bodies run later."""

        async def coroutine() -> None:
            pass

        def generator() -> Any:
            yield

        async def async_generator() -> Any:
            yield

        functions: dict[str, Callable[[], Any]] = {
            "coroutine": coroutine,
            "generator": generator,
            "async generator": async_generator,
        }
        with pytest.raises(TypeError, match="plain functions"):
            with_context(functions[kind])


class TestWhatPythonCopies:
    """The contract the README states for the standard ways to hand work to a thread."""

    @starts_with_empty_context
    def test_plain_submit_sees_no_span(self) -> None:
        """ThreadPoolExecutor.submit does not carry the caller's span into the worker."""
        with helicone_span(name="parent"), ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(current_span).result(WAIT) is None

    @starts_with_empty_context
    def test_plain_map_sees_no_span(self) -> None:
        """ThreadPoolExecutor.map does not carry the caller's span into the worker."""
        with helicone_span(name="parent"), ThreadPoolExecutor(max_workers=1) as pool:
            seen = list(pool.map(lambda _: current_span(), range(2), timeout=WAIT))
        assert seen == [None, None]

    def test_plain_worker_keeps_bind(self) -> None:
        """A plain pool worker keeps what one call bound for the next call it runs."""

        def bind_user() -> None:
            bind(user="left-behind")

        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(bind_user).result(WAIT)
            seen_by_next_call = pool.submit(bound_metadata).result(WAIT)
        assert seen_by_next_call.user == "left-behind"

    @starts_with_empty_context
    def test_run_in_executor_sees_no_span(self) -> None:
        """loop.run_in_executor(None, fn) does not carry the awaiting task's span."""

        async def main() -> Span | None:
            async with helicone_span(name="parent"):
                return await asyncio.get_running_loop().run_in_executor(None, current_span)

        assert asyncio.run(main()) is None

    def test_thread_sees_no_span(self) -> None:
        """threading.Thread starts with an empty context, unless the interpreter is set to copy it."""
        with helicone_span(name="parent") as parent:
            seen = run_in_thread(current_span)
        assert seen is (parent if THREADS_INHERIT_CONTEXT else None)

    def test_to_thread_copies(self, helicone: HeliconeReceiver) -> None:
        """asyncio.to_thread copies the context: spans opened there are children of the caller's."""

        async def main() -> tuple[Span, tuple[Span | None, Span]]:
            async with helicone_span(**PARENT_OPTIONS) as parent:
                return parent, await asyncio.to_thread(open_child)

        parent, (outer, child) = asyncio.run(main())
        assert outer is parent
        assert child.parent is parent
        assert_inherits_parent(records_by_name(helicone, 2)["child"])

    def test_anyio_run_sync_copies(self, helicone: HeliconeReceiver) -> None:
        """anyio.to_thread.run_sync copies the context: spans opened there are children."""

        async def main() -> tuple[Span, tuple[Span | None, Span]]:
            async with helicone_span(**PARENT_OPTIONS) as parent:
                return parent, await anyio.to_thread.run_sync(open_child)

        parent, (outer, child) = anyio.run(main)
        assert outer is parent
        assert child.parent is parent
        assert_inherits_parent(records_by_name(helicone, 2)["child"])


class TestBindInWorker:
    def test_worker_bind_leaves_caller_record(self, helicone: HeliconeReceiver) -> None:
        """A bind() inside a submitted call does not change the record of the caller's span."""

        def bind_user(index: int) -> None:
            bind(user=f"worker-{index}")

        with (
            helicone_span(name="parent", user="alice"),
            ContextThreadPoolExecutor(max_workers=2) as pool,
        ):
            list(pool.map(bind_user, range(2), timeout=WAIT))
        meta = records_by_name(helicone, 1)["parent"]["providerRequest"]["meta"]
        assert meta["Helicone-User-Id"] == "alice"
