"""heliconetrace.structlog.add_helicone_context on real structlog loggers, in every thread.

The last class runs the documented recipe that routes structlog, the toolkit's own logger
included, into the standard library's `logging`.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.handlers
import queue
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import structlog

import heliconetrace
from heliconetrace import (
    ContextThreadPoolExecutor,
    bind,
    helicone_logged,
    helicone_span,
    with_context,
)
from heliconetrace.structlog import add_helicone_context
from tests.receiver import HeliconeReceiver

ROOT = Path(__file__).resolve().parent.parent
WAIT = 10.0


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    captured: list[dict[str, Any]] = []
    lock = threading.Lock()

    def keep(logger: Any, method_name: str, event_dict: Any) -> Any:
        with lock:
            captured.append({**event_dict, "thread": threading.current_thread().name})
        raise structlog.DropEvent

    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, add_helicone_context, keep]
    )
    yield captured
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def log_inside() -> None:
    structlog.get_logger().info("inside")


class TestFields:
    def test_adds_span_fields_inside_span(self, events: list[dict[str, Any]]) -> None:
        """Inside a span, events carry its request id, user, session, model and properties."""
        with helicone_span(
            user="u1", session_id="s1", model="gpt-4o", properties={"Team": "a"}, name="op"
        ) as span:
            structlog.get_logger().info("inside")
        event = events[0]
        assert event["helicone_request_id"] == span.request_id
        assert event["helicone_user_id"] == "u1"
        assert event["helicone_session_id"] == "s1"
        assert event["helicone_model"] == "gpt-4o"
        assert event["helicone_properties"] == {"Team": "a"}
        assert event["helicone_span"] == "op"

    def test_adds_nothing_outside_span(self, events: list[dict[str, Any]]) -> None:
        """Outside a span the event is left as it is."""
        bind(user="not-in-a-span")
        structlog.get_logger().info("outside")
        assert not any(key.startswith("helicone_") for key in events[0])

    def test_works_beside_merge_contextvars(self, events: list[dict[str, Any]]) -> None:
        """structlog's own contextvars and the span's fields both reach the event."""
        structlog.contextvars.bind_contextvars(tenant="acme")

        @helicone_logged(user="u2")
        def handler() -> None:
            structlog.get_logger().info("handled")

        handler()
        assert events[0]["tenant"] == "acme"
        assert events[0]["helicone_user_id"] == "u2"

    def test_keeps_existing_keys(self, events: list[dict[str, Any]]) -> None:
        """A key the caller set is not overwritten."""
        with helicone_span(user="span-user"):
            structlog.get_logger().info("event", helicone_user_id="explicit")
        assert events[0]["helicone_user_id"] == "explicit"

    def test_bind_inside_span_shows(self, events: list[dict[str, Any]]) -> None:
        """A user bound inside an open span appears on the events logged after the bind()."""
        with helicone_span(name="late-user"):
            bind(user="known-later")
            structlog.get_logger().info("after bind")
        assert events[0]["helicone_user_id"] == "known-later"


class TestThreads:
    def test_context_pool_worker(self, events: list[dict[str, Any]]) -> None:
        """A call submitted to ContextThreadPoolExecutor logs with the submitter's span."""
        with (
            helicone_span(name="op", user="u1") as span,
            ContextThreadPoolExecutor(1, thread_name_prefix="pool") as pool,
        ):
            pool.submit(log_inside).result(WAIT)
        assert events[0]["thread"].startswith("pool")
        assert events[0]["helicone_request_id"] == span.request_id
        assert events[0]["helicone_user_id"] == "u1"

    def test_with_context_thread(self, events: list[dict[str, Any]]) -> None:
        """A Thread whose target is wrapped with with_context() logs with the caller's span."""
        with helicone_span(name="op", user="u1") as span:
            thread = threading.Thread(target=with_context(log_inside), name="wrapped")
            thread.start()
            thread.join(WAIT)
        assert events[0]["thread"] == "wrapped"
        assert events[0]["helicone_request_id"] == span.request_id

    def test_to_thread(self, events: list[dict[str, Any]]) -> None:
        """A function run with asyncio.to_thread logs with the awaiting task's span."""

        async def main() -> str:
            async with helicone_span(name="op", user="u1") as span:
                await asyncio.to_thread(log_inside)
            return span.request_id

        request_id = asyncio.run(main())
        assert events[0]["thread"] != threading.current_thread().name
        assert events[0]["helicone_request_id"] == request_id

    def test_anyio_worker(self, events: list[dict[str, Any]]) -> None:
        """A function run with anyio.to_thread.run_sync, as FastAPI runs sync code, logs with the span."""

        async def main() -> str:
            async with helicone_span(name="op", user="u1") as span:
                await anyio.to_thread.run_sync(log_inside)
            return span.request_id

        request_id = anyio.run(main)
        assert events[0]["thread"] != threading.current_thread().name
        assert events[0]["helicone_request_id"] == request_id

    def test_contextvars_reach_worker(self, events: list[dict[str, Any]]) -> None:
        """In a worker, structlog's bound contextvars and the span's fields are both present."""
        structlog.contextvars.bind_contextvars(tenant="acme")
        with helicone_span(name="op", user="u1"), ContextThreadPoolExecutor(1) as pool:
            pool.submit(log_inside).result(WAIT)
        assert events[0]["tenant"] == "acme"
        assert events[0]["helicone_user_id"] == "u1"

    def test_concurrent_workers_keep_spans(self, events: list[dict[str, Any]]) -> None:
        """Handlers logging from several workers at once each log their own span's fields."""
        count = 4
        barrier = threading.Barrier(count)

        @helicone_logged
        def handler(index: int) -> None:
            bind(user=f"user-{index}")
            barrier.wait(WAIT)
            structlog.get_logger().info("handled", index=index)

        with ContextThreadPoolExecutor(count) as pool:
            for future in [pool.submit(handler, index) for index in range(count)]:
                future.result(WAIT)
        handled = [event for event in events if event["event"] == "handled"]
        assert len(handled) == count
        for event in handled:
            assert event["helicone_user_id"] == f"user-{event['index']}"
        assert len({event["helicone_request_id"] for event in handled}) == count

    def test_plain_pool_adds_nothing(self, events: list[dict[str, Any]]) -> None:
        """A plain ThreadPoolExecutor worker has no span, so its events get no span fields."""
        from concurrent.futures import ThreadPoolExecutor

        with helicone_span(name="op", user="u1"), ThreadPoolExecutor(1) as pool:
            pool.submit(log_inside).result(WAIT)
        assert not any(key.startswith("helicone_") for key in events[0])

    def test_queue_listener_loses_span(self, events: list[dict[str, Any]]) -> None:
        """A stdlib record formatted by a QueueListener's handler, in its thread, gets no span."""
        formatted = io.StringIO()
        handler = logging.StreamHandler(formatted)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[add_helicone_context],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(),
                ],
            )
        )
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(records, handler)
        app_logger = logging.getLogger("heliconetrace.test.queue")
        queue_handler = logging.handlers.QueueHandler(records)
        app_logger.addHandler(queue_handler)
        listener.start()
        try:
            with helicone_span(name="op", user="u1"):
                app_logger.warning("queued")
        finally:
            listener.stop()
            app_logger.removeHandler(queue_handler)
        rendered = json.loads(formatted.getvalue())
        assert rendered["event"] == "queued"
        assert "helicone_request_id" not in rendered


def readme_logging_recipe() -> str:
    """Return the Python block of docs/integrations.md that sets up ProcessorFormatter."""
    readme = (ROOT / "docs" / "integrations.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    recipes = [block for block in blocks if "ProcessorFormatter" in block]
    assert len(recipes) == 1, "docs/integrations.md should contain one Python block using ProcessorFormatter"
    return str(recipes[0])


class CaptureHandler(logging.Handler):
    """Keep each record with its text, formatted when emitted, as a stream handler does."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.records: list[tuple[logging.LogRecord, dict[str, Any]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record, json.loads(self.format(record))))


@pytest.fixture
def readme_logging() -> Iterator[logging.Formatter]:
    """Run the documented stdlib recipe and return the formatter it installs; undo it afterwards."""
    root = logging.getLogger()
    toolkit_logger = logging.getLogger("heliconetrace")
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_toolkit_level = toolkit_logger.level
    exec(compile(readme_logging_recipe(), "docs/integrations.md", "exec"), {})
    added = [handler for handler in root.handlers if handler not in saved_handlers]
    assert len(added) == 1
    assert added[0].formatter is not None
    yield added[0].formatter
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    toolkit_logger.setLevel(saved_toolkit_level)
    structlog.reset_defaults()


@pytest.fixture
def captured(readme_logging: logging.Formatter) -> Iterator[CaptureHandler]:
    """A handler on the stdlib logger named "heliconetrace", with the documented formatter."""
    handler = CaptureHandler(readme_logging)
    toolkit_logger = logging.getLogger("heliconetrace")
    toolkit_logger.addHandler(handler)
    yield handler
    toolkit_logger.removeHandler(handler)


class TestStdlibRouting:
    def test_toolkit_warning_reaches_logging(
        self, captured: CaptureHandler, helicone: HeliconeReceiver
    ) -> None:
        """Under the documented recipe, a delivery warning reaches the stdlib logger "heliconetrace"."""
        helicone.mode = "401"
        with helicone_span(name="rejected"):
            pass
        heliconetrace.flush(WAIT)
        warnings = [
            (record, rendered)
            for record, rendered in captured.records
            if record.levelno == logging.WARNING
        ]
        assert len(warnings) == 1
        record, rendered = warnings[0]
        assert record.name == "heliconetrace"
        assert rendered["event"] == "heliconetrace could not deliver a record to Helicone"
        assert rendered["logger"] == "heliconetrace"
        assert rendered["level"] == "warning"
        assert "401" in rendered["error"]

    def test_structlog_events_get_span_fields(self, captured: CaptureHandler) -> None:
        """Under the documented recipe, structlog events logged inside a span carry its fields."""
        with helicone_span(name="op", user="u1") as span:
            structlog.get_logger("heliconetrace.test").warning("from structlog")
        rendered = captured.records[-1][1]
        assert rendered["event"] == "from structlog"
        assert rendered["helicone_request_id"] == span.request_id
        assert rendered["helicone_user_id"] == "u1"

    def test_stdlib_events_get_span_fields(self, captured: CaptureHandler) -> None:
        """Under the documented recipe, plain `logging` calls inside a span carry its fields too."""
        with helicone_span(name="op", user="u1") as span:
            logging.getLogger("heliconetrace.test").warning("from logging")
        rendered = captured.records[-1][1]
        assert rendered["event"] == "from logging"
        assert rendered["helicone_request_id"] == span.request_id
        assert rendered["helicone_user_id"] == "u1"
