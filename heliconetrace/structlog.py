"""A structlog processor that puts the current span's ids and metadata on every log event.

Add it to your processor chain before the renderer, beside `merge_contextvars` if you use it::

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            heliconetrace.structlog.add_helicone_context,
            structlog.processors.JSONRenderer(),
        ]
    )

Outside a span it adds nothing. Keys already in the event are left as they are.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from heliconetrace._context import SCOPE


def add_helicone_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add helicone_request_id, helicone_user_id, helicone_session_id, helicone_model and
    helicone_properties for the span running in this context."""
    span = SCOPE.get().span
    if span is None:
        return event_dict

    metadata = span.metadata
    event_dict.setdefault("helicone_request_id", span.request_id)
    if metadata.name is not None:
        event_dict.setdefault("helicone_span", metadata.name)
    if metadata.user is not None:
        event_dict.setdefault("helicone_user_id", metadata.user)
    if metadata.session_id is not None:
        event_dict.setdefault("helicone_session_id", metadata.session_id)
    if metadata.model is not None:
        event_dict.setdefault("helicone_model", metadata.model)
    if metadata.properties:
        event_dict.setdefault("helicone_properties", dict(metadata.properties))
    return event_dict
