"""Reassemble an OpenAI Responses API stream into its final `response` object.

The terminal event (`response.completed`, `response.incomplete` or `response.failed`) carries
the whole response, so its `response` object is the body whenever its `output` is non-empty.
Otherwise, for a stream that was cut off or failed after some output, the output items are
rebuilt from the item, content-part and delta events and placed into the latest snapshot.
A `.done` event carries the full value of the field its `.delta` events streamed, so it replaces
that field instead of adding to it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from ._chunk import Chunk, Reassembly, as_dict, as_int, as_list, as_str, error_payload

_SNAPSHOT_EVENTS = frozenset(
    {
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)
_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})

# Event prefix -> (output-item field that its `.delta` events extend and its `.done` event sets,
# type of the item to create when no `.added` event came first).
_ITEM_TEXT_EVENTS = {
    "response.function_call_arguments": ("arguments", "function_call"),
    "response.custom_tool_call_input": ("input", "custom_tool_call"),
    "response.mcp_call_arguments": ("arguments", "mcp_call"),
    "response.code_interpreter_call_code": ("code", "code_interpreter_call"),
}
# Event prefix -> (item list field, event member holding the position in that list,
# type of the part to create when no `.added` event came first, part text field).
_PART_TEXT_EVENTS = {
    "response.output_text": ("content", "content_index", "output_text", "text"),
    "response.refusal": ("content", "content_index", "refusal", "refusal"),
    "response.reasoning_text": ("content", "content_index", "reasoning_text", "text"),
    "response.reasoning_summary_text": ("summary", "summary_index", "summary_text", "text"),
}
# Event -> (item list field, event member holding the position, event member holding the part).
_PART_EVENTS = {
    "response.content_part.added": ("content", "content_index", "part"),
    "response.content_part.done": ("content", "content_index", "part"),
    "response.reasoning_summary_part.added": ("summary", "summary_index", "part"),
    "response.reasoning_summary_part.done": ("summary", "summary_index", "part"),
}


class _ResponseBuilder:
    def __init__(self) -> None:
        self.snapshot: dict[str, Any] | None = None
        self.terminal: dict[str, Any] | None = None
        self.items: dict[int, dict[str, Any]] = {}
        self.index_by_item_id: dict[str, int] = {}
        self.result = Reassembly(json={})

    def absorb(self, chunk: Chunk) -> None:
        data = chunk.data
        kind = as_str(data.get("type")) or ""
        if self.result.error is None and kind not in _SNAPSHOT_EVENTS:
            self.result.error = error_payload(chunk)

        carried = False
        if kind in _SNAPSHOT_EVENTS:
            self._absorb_snapshot(kind, data)
        elif kind in ("response.output_item.added", "response.output_item.done"):
            carried = self._absorb_item(data)
        elif kind in _PART_EVENTS:
            self._absorb_part(data, *_PART_EVENTS[kind])
        elif kind == "response.output_text.annotation.added":
            self._absorb_annotation(data)
        else:
            prefix, _, suffix = kind.rpartition(".")
            if suffix in ("delta", "done"):
                carried = self._absorb_text(data, prefix, suffix == "delta")
        if carried and self.result.first_content_index is None:
            self.result.first_content_index = chunk.item_index

    def build(self) -> Reassembly:
        base = self.terminal if self.terminal is not None else self.snapshot
        body: dict[str, Any] = copy.deepcopy(base) if base is not None else {"object": "response"}
        terminal_output = as_list((self.terminal or {}).get("output"))
        if self.items and not terminal_output:
            body["output"] = [self.items[index] for index in sorted(self.items)]
        body.setdefault("output", [])
        self.result.json = body
        return self.result

    def _absorb_snapshot(self, kind: str, data: dict[str, Any]) -> None:
        response = as_dict(data.get("response"))
        if response is None:
            return
        self.snapshot = response
        if kind in _TERMINAL_EVENTS:
            self.terminal = response
        if self.result.model is None:
            self.result.model = as_str(response.get("model")) or None
        if as_dict(response.get("usage")) is not None:
            self.result.usage_present = True
        if kind == "response.failed" and self.result.error is None:
            self.result.error = as_dict(response.get("error"))

    def _absorb_item(self, data: dict[str, Any]) -> bool:
        item = as_dict(data.get("item"))
        if item is None:
            return False
        index = self._item_index(data)
        self.items[index] = copy.deepcopy(item)
        item_id = as_str(item.get("id"))
        if item_id:
            self.index_by_item_id[item_id] = index
        return _item_has_content(item)

    def _absorb_part(
        self, data: dict[str, Any], field: str, position_key: str, part_key: str
    ) -> None:
        part = as_dict(data.get(part_key))
        if part is None:
            return
        parts = self._item_list(data, field)
        position = _position(data, position_key, parts)
        previous = parts[position]
        new = copy.deepcopy(part)
        # A part's `.done` event can list fewer logprobs than its deltas streamed.
        if len(as_list(previous.get("logprobs"))) > len(as_list(new.get("logprobs"))):
            new["logprobs"] = previous["logprobs"]
        parts[position] = new

    def _absorb_annotation(self, data: dict[str, Any]) -> None:
        annotation = data.get("annotation")
        if annotation is None:
            return
        part = self._text_part(data, "response.output_text")
        annotations = part.get("annotations")
        if not isinstance(annotations, list):
            annotations = part["annotations"] = []
        annotations.append(copy.deepcopy(annotation))

    def _absorb_text(self, data: dict[str, Any], prefix: str, is_delta: bool) -> bool:
        if prefix in _ITEM_TEXT_EVENTS:
            field, item_type = _ITEM_TEXT_EVENTS[prefix]
            target = self._item(data, item_type)
        elif prefix in _PART_TEXT_EVENTS:
            field = _PART_TEXT_EVENTS[prefix][3]
            target = self._text_part(data, prefix)
        else:
            # Other streamed fields (audio, tool progress) have no place in the output items, but
            # a non-empty delta still marks the first content.
            return is_delta and bool(data.get("delta"))

        if is_delta:
            delta = as_str(data.get("delta")) or ""
            target[field] = (as_str(target.get(field)) or "") + delta
            logprobs = as_list(data.get("logprobs"))
            if logprobs:
                target["logprobs"] = [*as_list(target.get("logprobs")), *logprobs]
            return bool(delta)
        full = as_str(data.get(field))
        if full is not None:
            target[field] = full
        return False

    def _item_index(self, data: dict[str, Any]) -> int:
        index = as_int(data.get("output_index"))
        if index is not None:
            return index
        item_id = as_str(data.get("item_id"))
        if item_id and item_id in self.index_by_item_id:
            return self.index_by_item_id[item_id]
        return max(self.items, default=-1) + 1

    def _item(self, data: dict[str, Any], default_type: str) -> dict[str, Any]:
        """Return the output item an event refers to, creating it if no `.added` event came."""
        index = self._item_index(data)
        item = self.items.get(index)
        if item is None:
            item = {"type": default_type}
            item_id = as_str(data.get("item_id"))
            if item_id:
                item["id"] = item_id
                self.index_by_item_id[item_id] = index
            self.items[index] = item
        return item

    def _item_list(self, data: dict[str, Any], field: str) -> list[Any]:
        default_type = "reasoning" if field == "summary" else "message"
        item = self._item(data, default_type)
        parts = item.get(field)
        if not isinstance(parts, list):
            parts = item[field] = []
        return parts

    def _text_part(self, data: dict[str, Any], prefix: str) -> dict[str, Any]:
        field, position_key, part_type, text_field = _PART_TEXT_EVENTS[prefix]
        parts = self._item_list(data, field)
        position = _position(data, position_key, parts)
        part: dict[str, Any] = parts[position]
        if not part:
            part.update({"type": part_type, text_field: ""})
        return part


def _position(data: dict[str, Any], position_key: str, parts: list[Any]) -> int:
    """Return the list position an event names, growing `parts` with empty dicts to reach it."""
    position = as_int(data.get(position_key))
    if position is None or position < 0:
        position = max(len(parts) - 1, 0)
    while len(parts) <= position:
        parts.append({})
    if not isinstance(parts[position], dict):
        parts[position] = {}
    return position


def _item_has_content(item: dict[str, Any]) -> bool:
    """Return True if an output item carries a tool-call name or arguments, or any text."""
    if item.get("name") or item.get("arguments"):
        return True
    for field in ("content", "summary"):
        for part in as_list(item.get(field)):
            part_dict = as_dict(part) or {}
            if part_dict.get("text") or part_dict.get("refusal"):
                return True
    return False


def reassemble(chunks: Sequence[Chunk]) -> Reassembly:
    """Rebuild the `response` object, the error, and the first content item of a stream.

    The error is the first `error` event's payload, or else the `response.error` of a
    `response.failed` event.
    """
    builder = _ResponseBuilder()
    for chunk in chunks:
        builder.absorb(chunk)
    return builder.build()
