"""heliconetrace.structlog.add_helicone_context on real structlog loggers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from heliconetrace import bind, helicone_logged, helicone_span
from heliconetrace.structlog import add_helicone_context


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    captured: list[dict[str, Any]] = []

    def keep(logger: Any, method_name: str, event_dict: Any) -> Any:
        captured.append(dict(event_dict))
        raise structlog.DropEvent

    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, add_helicone_context, keep]
    )
    yield captured
    structlog.reset_defaults()


def test_adds_span_fields_inside_span(events: list[dict[str, Any]]) -> None:
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


def test_adds_nothing_outside_span(events: list[dict[str, Any]]) -> None:
    """Outside a span the event is left as it is."""
    bind(user="not-in-a-span")
    structlog.get_logger().info("outside")
    assert not any(key.startswith("helicone_") for key in events[0])


def test_works_beside_merge_contextvars(events: list[dict[str, Any]]) -> None:
    """structlog's own contextvars and the span's fields both reach the event."""
    structlog.contextvars.bind_contextvars(tenant="acme")
    try:

        @helicone_logged(user="u2")
        def handler() -> None:
            structlog.get_logger().info("handled")

        handler()
    finally:
        structlog.contextvars.clear_contextvars()
    assert events[0]["tenant"] == "acme"
    assert events[0]["helicone_user_id"] == "u2"


def test_keeps_existing_keys(events: list[dict[str, Any]]) -> None:
    """A key the caller set is not overwritten."""
    with helicone_span(user="span-user"):
        structlog.get_logger().info("event", helicone_user_id="explicit")
    assert events[0]["helicone_user_id"] == "explicit"
