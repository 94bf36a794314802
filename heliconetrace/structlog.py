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

It reads the span of the context it runs in. A worker thread has the caller's span only where
the context was copied into it (`asyncio.to_thread`, `ContextThreadPoolExecutor`,
`with_context()`). In a stdlib `ProcessorFormatter`'s `foreign_pre_chain` it runs in the
thread that formats the record. The handlers of a `logging.handlers.QueueListener` format in
the listener's thread, which has no span, so plain `logging` records get no span fields there.
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
