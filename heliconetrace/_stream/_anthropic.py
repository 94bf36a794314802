"""Reassemble an Anthropic Messages stream into a `message` body.

`message_start` carries the message with empty content and the input token count. Content
blocks are built from `content_block_start` and their deltas: `text_delta`, `thinking_delta`,
`signature_delta`, `citations_delta`, and `input_json_delta`, whose pieces are joined and parsed
into the block's `input` at the end. `message_delta` carries the stop reason and usage totals:
its `output_tokens` is the running total, so it replaces the count from `message_start`.

The anthropic SDK's `client.messages.stream()` also yields a `content_block_stop` that carries the
finished block. When present, that block replaces the one built from deltas.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from ._chunk import Chunk, Reassembly, as_dict, as_int, as_list, as_str, error_payload

# Block fields whose non-empty value, in a `content_block_start`, is content: text, thinking, a
# tool name, redacted thinking data.
_BLOCK_CONTENT_FIELDS = ("text", "thinking", "name", "data")
# Delta type -> (block type to create when no `content_block_start` came first, block field that
# the delta extends, delta field holding the piece).
_TEXT_DELTAS = {
    "text_delta": ("text", "text", "text"),
    "thinking_delta": ("thinking", "thinking", "thinking"),
}


class _MessageBuilder:
    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self.partial_json: dict[int, list[str]] = {}
        self.usage: dict[str, Any] | None = None
        self.result = Reassembly(json={})

    def absorb(self, chunk: Chunk) -> None:
        data = chunk.data
        kind = data.get("type")
        carried = False
        if kind == "message_start":
            self._absorb_start(data)
        elif kind == "content_block_start":
            carried = self._absorb_block_start(data)
        elif kind == "content_block_delta":
            carried = self._absorb_delta(data)
        elif kind == "content_block_stop":
            self._absorb_block_stop(data)
        elif kind == "message_delta":
            self._absorb_message_delta(data)
        elif self.result.error is None and kind != "ping":
            self.result.error = error_payload(chunk)
        if carried and self.result.first_content_index is None:
            self.result.first_content_index = chunk.item_index

    def build(self) -> Reassembly:
        for index, pieces in self.partial_json.items():
            raw = "".join(pieces)
            if raw.strip():
                self._block(index, "tool_use")["input"] = _parse_input(raw)
        body = copy.deepcopy(self.message) if self.message is not None else {}
        body.setdefault("type", "message")
        body.setdefault("role", "assistant")
        body["content"] = [self.blocks[index] for index in sorted(self.blocks)]
        if self.usage is not None:
            body["usage"] = self.usage
        self.result.json = body
        return self.result

    def _absorb_start(self, data: dict[str, Any]) -> None:
        message = as_dict(data.get("message"))
        if message is None:
            return
        self.message = dict(message)  # a copy, because message_delta sets its stop fields
        for index, block in enumerate(as_list(message.get("content"))):
            block_dict = as_dict(block)
            if block_dict is not None:
                self.blocks[index] = copy.deepcopy(block_dict)
        usage = as_dict(message.get("usage"))
        if usage is not None:
            self.usage = dict(usage)
            self.result.usage_present = True
        if self.result.model is None:
            self.result.model = as_str(message.get("model")) or None

    def _absorb_block_start(self, data: dict[str, Any]) -> bool:
        block = as_dict(data.get("content_block"))
        if block is None:
            return False
        index = self._index(data)
        self.blocks[index] = copy.deepcopy(block)
        self.partial_json.pop(index, None)
        return any(block.get(field) for field in _BLOCK_CONTENT_FIELDS)

    def _absorb_delta(self, data: dict[str, Any]) -> bool:
        delta = as_dict(data.get("delta"))
        if delta is None:
            return False
        index = self._index(data)
        kind = as_str(delta.get("type"))
        if kind in _TEXT_DELTAS:
            block_type, field, piece_field = _TEXT_DELTAS[kind]
            piece = as_str(delta.get(piece_field)) or ""
            block = self._block(index, block_type)
            block[field] = (as_str(block.get(field)) or "") + piece
            return bool(piece)
        if kind == "signature_delta":
            signature = as_str(delta.get("signature")) or ""
            self._block(index, "thinking")["signature"] = signature
            return bool(signature)
        if kind == "input_json_delta":
            piece = as_str(delta.get("partial_json")) or ""
            self._block(index, "tool_use")
            self.partial_json.setdefault(index, []).append(piece)
            return bool(piece)
        if kind == "citations_delta":
            citation = delta.get("citation")
            block = self._block(index, "text")
            citations = block.get("citations")
            if not isinstance(citations, list):
                citations = block["citations"] = []
            citations.append(copy.deepcopy(citation))
            return citation is not None
        return False

    def _absorb_block_stop(self, data: dict[str, Any]) -> None:
        block = as_dict(data.get("content_block"))
        if block is not None:
            index = self._index(data)
            self.blocks[index] = copy.deepcopy(block)
            self.partial_json.pop(index, None)

    def _absorb_message_delta(self, data: dict[str, Any]) -> None:
        delta = as_dict(data.get("delta")) or {}
        if self.message is None:
            self.message = {}
        for key, value in delta.items():
            if value is not None or key not in self.message:
                self.message[key] = value
        usage = as_dict(data.get("usage"))
        if usage is not None:
            self.usage = self.usage if self.usage is not None else {}
            self.usage.update({key: value for key, value in usage.items() if value is not None})
            self.result.usage_present = True

    def _index(self, data: dict[str, Any]) -> int:
        index = as_int(data.get("index"))
        return index if index is not None else max(self.blocks, default=0)

    def _block(self, index: int, block_type: str) -> dict[str, Any]:
        """Return the block at `index`, creating one if no `content_block_start` came first."""
        block = self.blocks.get(index)
        if block is None:
            block = self.blocks[index] = {"type": block_type}
            if block_type == "tool_use":
                block["input"] = {}
        return block


def _parse_input(raw: str) -> object:
    """Return the tool input that the joined `input_json_delta` pieces encode."""
    try:
        return json.loads(raw)
    except ValueError:
        # NOTE: a stream cut off inside the tool input leaves invalid JSON. The raw text is kept
        # so the log still shows it, although `input` is then a string, not an object.
        return raw


def reassemble(chunks: Sequence[Chunk]) -> Reassembly:
    """Rebuild the `message` body, the error, and the first content item of a stream.

    The error is the payload of the first `error` event; the body keeps what streamed before it.
    """
    builder = _MessageBuilder()
    for chunk in chunks:
        builder.absorb(chunk)
    return builder.build()
