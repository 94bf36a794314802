"""The parts of OpenAI-style streams that chat completions and legacy completions share.

`reassemble_choices` walks the chunks, `Envelope` collects the top-level fields (id, model,
usage, provider additions) and `merge_logprobs` joins per-chunk logprobs. Each format defines how
one choice absorbs its entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ._chunk import Chunk, Reassembly, as_dict, as_int, as_list, error_payload, nonempty_str

# Top-level fields handled one by one. Every other field is a provider addition and is kept.
_KNOWN_FIELDS = frozenset(
    {"id", "object", "created", "model", "choices", "usage", "system_fingerprint", "error"}
)
# Fields left out of the reassembled body. OpenAI adds a random `obfuscation` string to each
# chunk, which carries no content.
_DROPPED_FIELDS = frozenset({"obfuscation"})


def is_blank(value: object) -> bool:
    """Return True for None and for empty dicts and lists, which never replace a kept value."""
    return value is None or value == {} or value == []


class Envelope:
    """The top-level fields of an OpenAI-style stream, merged over its chunks.

    id and model come from the first chunk that has a non-empty one, because Azure's first chunk
    has `id: ""` and `model: ""`. Usage comes from the last chunk that has one, because providers
    that repeat usage send running totals. Groq sends usage only as `x_groq.usage`, which is
    copied to the top level, where OpenAI-style bodies carry usage.
    """

    def __init__(self) -> None:
        self.id: str | None = None
        self.created: int | None = None
        self.model: str | None = None
        self.fingerprint_seen = False
        self.system_fingerprint: object = None
        self.usage: dict[str, Any] | None = None
        self.groq_usage: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}

    def absorb(self, data: dict[str, Any]) -> None:
        """Merge the top-level fields of one chunk."""
        if self.id is None:
            self.id = nonempty_str(data.get("id"))
        if self.model is None:
            self.model = nonempty_str(data.get("model"))
        if not self.created:
            self.created = as_int(data.get("created"))
        if "system_fingerprint" in data:
            self.fingerprint_seen = True
            if data["system_fingerprint"] is not None:
                self.system_fingerprint = data["system_fingerprint"]

        usage = as_dict(data.get("usage"))
        if usage is not None:
            self.usage = usage
        groq_usage = as_dict((as_dict(data.get("x_groq")) or {}).get("usage"))
        if groq_usage is not None:
            self.groq_usage = groq_usage

        for key, value in data.items():
            if key in _KNOWN_FIELDS or key in _DROPPED_FIELDS or is_blank(value):
                continue
            previous = self.extra.get(key)
            if isinstance(previous, dict) and isinstance(value, dict):
                self.extra[key] = {**previous, **value}
            else:
                self.extra[key] = value

    @property
    def usage_present(self) -> bool:
        """True if any chunk reported token usage."""
        return self.usage is not None or self.groq_usage is not None

    def build(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the non-stream body with the given `object` value and choices."""
        body: dict[str, Any] = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
        }
        if self.fingerprint_seen:
            body["system_fingerprint"] = self.system_fingerprint
        body["choices"] = choices
        usage = self.usage if self.usage is not None else self.groq_usage
        if usage is not None:
            body["usage"] = usage
        for key, value in self.extra.items():
            body.setdefault(key, value)
        return body


def merge_logprobs(previous: dict[str, Any] | None, new: object) -> dict[str, Any] | None:
    """Return `previous` extended by one chunk's logprobs object.

    List members (`content` and `refusal` in chat, `tokens`, `token_logprobs`, `top_logprobs` and
    `text_offset` in legacy completions) are concatenated. Other members keep their first
    non-null value.
    """
    new_dict = as_dict(new)
    if new_dict is None:
        return previous
    merged = previous if previous is not None else {}
    for key, value in new_dict.items():
        if isinstance(value, list):
            existing = merged.get(key)
            if isinstance(existing, list):
                existing.extend(value)
            else:
                merged[key] = list(value)
        elif merged.get(key) is None:
            merged[key] = value
    return merged


class ChoiceBuilder(Protocol):
    """One choice of the reassembled body, built from its entries in the chunks."""

    def absorb(self, choice: dict[str, Any]) -> bool:
        """Merge one chunk's entry for this choice and return True if it carried content."""
        ...

    def build(self) -> dict[str, Any]:
        """Return the choice as the non-stream body has it."""
        ...


def reassemble_choices(
    chunks: Sequence[Chunk], new_choice: Callable[[int], ChoiceBuilder], obj: str
) -> Reassembly:
    """Rebuild a non-stream body with the given `object` value from OpenAI-style chunks.

    Choices are matched by their `index` (by position when it is missing), so several choices
    may interleave. The first error chunk sets the error, and the body keeps what streamed before
    and after it.
    """
    envelope = Envelope()
    choices: dict[int, ChoiceBuilder] = {}
    result = Reassembly(json={})

    for chunk in chunks:
        if result.error is None:
            result.error = error_payload(chunk)
        envelope.absorb(chunk.data)
        for position, entry in enumerate(as_list(chunk.data.get("choices"))):
            entry_dict = as_dict(entry)
            if entry_dict is None:
                continue
            index = as_int(entry_dict.get("index"))
            index = position if index is None else index
            choice = choices.get(index)
            if choice is None:
                choice = choices[index] = new_choice(index)
            if choice.absorb(entry_dict) and result.first_content_index is None:
                result.first_content_index = chunk.item_index

    built = [choices[index].build() for index in sorted(choices)]
    result.json = envelope.build(obj, built)
    result.model = envelope.model
    result.usage_present = envelope.usage_present
    return result
