"""Reassemble an OpenAI chat-completions stream into a `chat.completion` body.

Providers that speak this format add their own fields, handled here as well:

- DeepSeek streams `delta.reasoning_content`, Groq and OpenRouter `delta.reasoning`.
- OpenRouter also streams `delta.reasoning_details`, a list of parts merged by their `index`.
  Its text repeats `delta.reasoning`, and each field is joined on its own, so neither doubles.
- Mistral sends `delta.content` as a list of typed parts (`thinking`, `text`) in some chunks and
  as a string in others. The message content is then a list of parts, as in Mistral's
  non-stream responses.
- Tool calls are merged by `index`. A call without an index continues the last call, unless it
  brings a new `id`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from ._chunk import Chunk, Reassembly, as_dict, as_int, as_list, as_str
from ._openai_common import is_blank, merge_logprobs, reassemble_choices

_CHOICE_FIELDS = frozenset({"index", "delta", "logprobs", "finish_reason"})
_DELTA_FIELDS = frozenset(
    {
        "role",
        "content",
        "refusal",
        "reasoning_content",
        "reasoning",
        "reasoning_details",
        "tool_calls",
        "function_call",
        "audio",
    }
)
_REASONING_FIELDS = ("reasoning_content", "reasoning")
_REASONING_DETAIL_TEXT_FIELDS = ("text", "summary", "data", "signature")
_AUDIO_TEXT_FIELDS = ("data", "transcript")
_TOOL_CALL_FIELDS = frozenset({"index", "id", "type", "function"})


class _ToolCall:
    def __init__(self) -> None:
        self.id: str | None = None
        self.type: str | None = None
        self.name = ""
        self.arguments: list[str] = []
        self.extra: dict[str, Any] = {}

    def absorb(self, delta: dict[str, Any]) -> bool:
        """Merge one tool-call delta and return True if it carried a name or arguments."""
        self.id = self.id or as_str(delta.get("id"))
        self.type = self.type or as_str(delta.get("type"))
        function = as_dict(delta.get("function")) or {}
        # The name is taken whole from the first delta that has one, so a repeated name is not
        # doubled.
        name = as_str(function.get("name"))
        if name and not self.name:
            self.name = name
        arguments = as_str(function.get("arguments"))
        if arguments:
            self.arguments.append(arguments)
        for key, value in delta.items():
            if key not in _TOOL_CALL_FIELDS and not is_blank(value):
                self.extra[key] = value
        return bool(name or arguments)

    def build(self) -> dict[str, Any]:
        call: dict[str, Any] = {
            "id": self.id,
            "type": self.type or "function",
            "function": {"name": self.name, "arguments": "".join(self.arguments)},
        }
        call.update(self.extra)
        return call


class _ToolCalls:
    """The tool calls of one choice, in the order they started."""

    def __init__(self) -> None:
        self.calls: list[_ToolCall] = []
        self._by_index: dict[int, _ToolCall] = {}

    def absorb(self, delta: dict[str, Any]) -> bool:
        index = as_int(delta.get("index"))
        new_id = as_str(delta.get("id"))
        if index is not None:
            call = self._by_index.get(index)
            # A new id under an index in use starts a new call, so that calls which all arrive
            # with index 0 stay apart.
            if call is None or (new_id and call.id and new_id != call.id):
                call = self._start()
                self._by_index[index] = call
        elif not self.calls or (new_id and self.calls[-1].id and new_id != self.calls[-1].id):
            call = self._start()
        else:
            call = self.calls[-1]
        return call.absorb(delta)

    def _start(self) -> _ToolCall:
        call = _ToolCall()
        self.calls.append(call)
        return call


class _Content:
    """`message.content`: a joined string, or a list of typed parts once a delta sent a list."""

    def __init__(self) -> None:
        self.seen = False  # a delta had a string or list content, even an empty one
        self.as_parts = False
        self.parts: list[dict[str, Any]] = []

    def absorb(self, value: object) -> bool:
        """Merge one `delta.content` and return True if it carried text."""
        if isinstance(value, str):
            self.seen = True
            self._append_text("text", value)
            return bool(value)
        if isinstance(value, list):
            self.seen = True
            self.as_parts = True
            carried = False
            for part in value:
                carried = self._absorb_part(part) or carried
            return carried
        return False

    def build(self) -> object:
        if not self.seen:
            return None
        if self.as_parts:
            return self.parts
        return "".join(part["text"] for part in self.parts)

    def _absorb_part(self, part: object) -> bool:
        part_dict = as_dict(part)
        if part_dict is None:
            return False
        kind = part_dict.get("type")
        if kind == "text":
            text = as_str(part_dict.get("text")) or ""
            self._append_text("text", text)
            return bool(text)
        if kind == "thinking":
            text = _thinking_text(part_dict.get("thinking"))
            self._append_text("thinking", text)
            return bool(text)
        self.parts.append(copy.deepcopy(part_dict))
        return True

    def _append_text(self, kind: str, text: str) -> None:
        if not text:
            return
        last = self.parts[-1] if self.parts else None
        if last is not None and last.get("type") == kind:
            if kind == "thinking":
                last["thinking"][0]["text"] += text
            else:
                last["text"] += text
        elif kind == "thinking":
            self.parts.append({"type": "thinking", "thinking": [{"type": "text", "text": text}]})
        else:
            self.parts.append({"type": "text", "text": text})


def _thinking_text(value: object) -> str:
    """Return the text of a Mistral thinking part, given as a string or a list of text parts."""
    if isinstance(value, str):
        return value
    texts = (as_str((as_dict(part) or {}).get("text")) for part in as_list(value))
    return "".join(text for text in texts if text)


class _Choice:
    def __init__(self, index: int) -> None:
        self.index = index
        self.role: str | None = None
        self.content = _Content()
        self.refusal_seen = False
        self.refusal: list[str] = []
        self.reasoning: dict[str, list[str]] = {}
        self.reasoning_details: dict[int, dict[str, Any]] = {}
        self.tool_calls = _ToolCalls()
        self.function_call: _ToolCall | None = None
        self.audio: dict[str, Any] | None = None
        self.delta_extra: dict[str, Any] = {}
        self.logprobs: dict[str, Any] | None = None
        self.finish_reason: object = None
        self.extra: dict[str, Any] = {}

    def absorb(self, choice: dict[str, Any]) -> bool:
        """Merge one chunk's entry for this choice and return True if it carried content."""
        if choice.get("finish_reason") is not None:
            self.finish_reason = choice["finish_reason"]
        self.logprobs = merge_logprobs(self.logprobs, choice.get("logprobs"))
        for key, value in choice.items():
            if key not in _CHOICE_FIELDS and not is_blank(value):
                self.extra[key] = value
        delta = as_dict(choice.get("delta"))
        return self._absorb_delta(delta) if delta is not None else False

    def _absorb_delta(self, delta: dict[str, Any]) -> bool:
        self.role = self.role or as_str(delta.get("role"))
        carried = self.content.absorb(delta.get("content"))

        refusal = delta.get("refusal")
        if "refusal" in delta:
            self.refusal_seen = True
        if isinstance(refusal, str):
            self.refusal.append(refusal)
            carried = carried or bool(refusal)

        for field in _REASONING_FIELDS:
            text = as_str(delta.get(field))
            if text is not None:
                self.reasoning.setdefault(field, []).append(text)
                carried = carried or bool(text)

        for position, detail in enumerate(as_list(delta.get("reasoning_details"))):
            carried = self._absorb_reasoning_detail(position, detail) or carried

        for tool_delta in as_list(delta.get("tool_calls")):
            tool_dict = as_dict(tool_delta)
            if tool_dict is not None:
                carried = self.tool_calls.absorb(tool_dict) or carried

        function_call = as_dict(delta.get("function_call"))
        if function_call is not None:
            self.function_call = self.function_call or _ToolCall()
            carried = self.function_call.absorb({"function": function_call}) or carried

        audio = as_dict(delta.get("audio"))
        if audio is not None:
            carried = self._absorb_audio(audio) or carried

        for key, value in delta.items():
            if key not in _DELTA_FIELDS and not is_blank(value):
                self.delta_extra[key] = value
        return carried

    def _absorb_reasoning_detail(self, position: int, detail: object) -> bool:
        detail_dict = as_dict(detail)
        if detail_dict is None:
            return False
        index = as_int(detail_dict.get("index"))
        merged = self.reasoning_details.setdefault(position if index is None else index, {})
        carried = False
        for field, value in detail_dict.items():
            if field in _REASONING_DETAIL_TEXT_FIELDS and isinstance(value, str):
                merged[field] = (as_str(merged.get(field)) or "") + value
                carried = carried or bool(value)
            elif merged.get(field) is None:
                merged[field] = value
        return carried

    def _absorb_audio(self, audio: dict[str, Any]) -> bool:
        merged = self.audio if self.audio is not None else {}
        self.audio = merged
        carried = False
        for field, value in audio.items():
            if field in _AUDIO_TEXT_FIELDS and isinstance(value, str):
                merged[field] = (as_str(merged.get(field)) or "") + value
                carried = carried or bool(value)
            elif value is not None:
                merged[field] = value
        return carried

    def build(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": self.role or "assistant",
            "content": self.content.build(),
        }
        if self.refusal_seen:
            message["refusal"] = "".join(self.refusal) if self.refusal else None
        for field, texts in self.reasoning.items():
            message[field] = "".join(texts)
        if self.reasoning_details:
            message["reasoning_details"] = list(self.reasoning_details.values())
        if self.tool_calls.calls:
            message["tool_calls"] = [call.build() for call in self.tool_calls.calls]
        if self.function_call is not None:
            message["function_call"] = self.function_call.build()["function"]
        if self.audio is not None:
            message["audio"] = self.audio
        for key, value in self.delta_extra.items():
            message.setdefault(key, value)

        built: dict[str, Any] = {
            "index": self.index,
            "message": message,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }
        for key, value in self.extra.items():
            built.setdefault(key, value)
        return built


def reassemble(chunks: Sequence[Chunk]) -> Reassembly:
    """Rebuild the `chat.completion` body, the error, and the first content item of a stream.

    A later chunk's null `finish_reason` or missing usage never replaces an earlier value. An
    error chunk sets the error and the body keeps what streamed before it.
    """
    return reassemble_choices(chunks, _Choice, "chat.completion")
