"""The chunk and reassembly types shared by the format modules, and defensive accessors.

Stream payloads come from providers and handlers that do not always follow their own schema, so
the format modules read every field through these accessors instead of trusting its type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Members of an error event that describe the event, not the error.
_EVENT_ENVELOPE_KEYS = frozenset({"type", "sequence_number"})


@dataclass(frozen=True)
class Chunk:
    """One JSON object of a stream: an SSE `data:` payload or a chunk the handler yielded."""

    data: dict[str, Any]
    event: str | None  # the SSE `event:` field, None for yielded chunks and unnamed events
    item_index: int  # position of the recorded item that completed this chunk


@dataclass
class Reassembly:
    """The body and stream facts that a format module rebuilt from one stream's chunks."""

    json: dict[str, Any]
    error: dict[str, Any] | None = None
    model: str | None = None
    usage_present: bool = False
    first_content_index: int | None = None  # item_index of the first chunk that carried content


def as_dict(value: object) -> dict[str, Any] | None:
    """Return `value` if it is a dict, else None."""
    return value if isinstance(value, dict) else None


def as_list(value: object) -> list[Any]:
    """Return `value` if it is a list, else an empty list."""
    return value if isinstance(value, list) else []


def as_str(value: object) -> str | None:
    """Return `value` if it is a str, else None."""
    return value if isinstance(value, str) else None


def as_int(value: object) -> int | None:
    """Return `value` if it is an int (bool excluded), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def nonempty_str(value: object) -> str | None:
    """Return `value` if it is a non-empty str, else None."""
    return value if isinstance(value, str) and value else None


def error_payload(chunk: Chunk) -> dict[str, Any] | None:
    """Return the error object a chunk carries, or None when it carries none.

    Most providers nest it as `{"error": {...}}`. An event typed `error` without that member (an
    older Responses API shape) is itself the payload, minus its `type` and `sequence_number`.
    """
    nested = as_dict(chunk.data.get("error"))
    if nested is not None:
        return nested
    if chunk.data.get("type") == "error" or chunk.event == "error":
        return {k: v for k, v in chunk.data.items() if k not in _EVENT_ENVELOPE_KEYS}
    return None
