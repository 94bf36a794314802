"""Turn the chunk objects a handler yields into plain JSON dicts.

Accepted: dicts and other mappings, openai and anthropic SDK models, and any pydantic v2 model.
Any other object is dropped rather than converted with `str()`, because Helicone cannot parse a
`repr` of an object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Events the SDKs' stream helpers add to the provider's own events. They repeat content that the
# provider's events already carry, so keeping them would double it.
# anthropic `client.messages.stream()` (anthropic 2.17, lib/streaming/_types.py):
_ANTHROPIC_HELPER_TYPES = frozenset({"text", "citation", "thinking", "signature", "input_json"})
# openai `client.chat.completions.stream()` (openai 3.63, lib/streaming/chat/_events.py); its
# "chunk" event wraps the provider's chunk and is unwrapped instead:
_OPENAI_CHAT_HELPER_PREFIXES = ("content.", "refusal.", "tool_calls.", "logprobs.")

_SDK_PACKAGES = ("openai", "anthropic")


def to_payload(item: object) -> dict[str, Any] | None:
    """Return `item` as a JSON dict, or None if it is not a chunk or only repeats other chunks."""
    if isinstance(item, dict):
        payload: dict[str, Any] | None = item
    elif isinstance(item, Mapping):
        payload = dict(item)
    else:
        payload = _model_to_dict(item)
    if payload is None:
        return None
    return _unwrap_helper_event(payload)


def _model_to_dict(item: object) -> dict[str, Any] | None:
    package = type(item).__module__.split(".", 1)[0]
    to_dict = getattr(item, "to_dict", None)
    model_dump = getattr(item, "model_dump", None)
    # The objects come from the handler, so a conversion that fails is bad input to skip, not a
    # fault of this package.
    try:
        if package in _SDK_PACKAGES and callable(to_dict):
            # The SDKs' to_dict keeps the wire names and drops fields the server did not send.
            # Serializer warnings are off because providers often send values the SDK types do
            # not declare (Mistral's list content, where the SDK declares a str).
            try:
                result = to_dict(mode="json", warnings=False)
            except TypeError:  # an SDK version whose to_dict takes fewer options
                result = to_dict()
        elif callable(model_dump):
            result = model_dump(mode="json", exclude_unset=True, warnings=False)
        else:
            return None
    except Exception:
        return None
    return result if isinstance(result, dict) else None


def _unwrap_helper_event(payload: dict[str, Any]) -> dict[str, Any] | None:
    kind = payload.get("type")
    if not isinstance(kind, str):
        return payload
    if kind == "chunk":
        inner = payload.get("chunk")
        return inner if isinstance(inner, dict) else None
    if kind in _ANTHROPIC_HELPER_TYPES or kind.startswith(_OPENAI_CHAT_HELPER_PREFIXES):
        return None
    return payload
