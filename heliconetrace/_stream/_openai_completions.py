"""Reassemble a legacy OpenAI completions stream (`object: text_completion`) into its body."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._chunk import Chunk, Reassembly, as_str
from ._openai_common import is_blank, merge_logprobs, reassemble_choices

_CHOICE_FIELDS = frozenset({"index", "text", "logprobs", "finish_reason"})


class _Choice:
    def __init__(self, index: int) -> None:
        self.index = index
        self.text: list[str] = []
        self.logprobs: dict[str, Any] | None = None
        self.finish_reason: object = None
        self.extra: dict[str, Any] = {}

    def absorb(self, choice: dict[str, Any]) -> bool:
        """Merge one chunk's entry for this choice and return True if it carried text."""
        text = as_str(choice.get("text"))
        if text:
            self.text.append(text)
        if choice.get("finish_reason") is not None:
            self.finish_reason = choice["finish_reason"]
        self.logprobs = merge_logprobs(self.logprobs, choice.get("logprobs"))
        for key, value in choice.items():
            if key not in _CHOICE_FIELDS and not is_blank(value):
                self.extra[key] = value
        return bool(text)

    def build(self) -> dict[str, Any]:
        built: dict[str, Any] = {
            "text": "".join(self.text),
            "index": self.index,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }
        for key, value in self.extra.items():
            built.setdefault(key, value)
        return built


def reassemble(chunks: Sequence[Chunk]) -> Reassembly:
    """Rebuild the `text_completion` body, the error, and the first content item of a stream."""
    return reassemble_choices(chunks, _Choice, "text_completion")
