"""Decide what a recorded stream is: raw SSE text or plain text, and which provider format.

Format names are the values of `StreamResult.format`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._chunk import Chunk, as_dict, as_list

OPENAI_CHAT = "openai-chat"
OPENAI_COMPLETIONS = "openai-completions"
OPENAI_RESPONSES = "openai-responses"
ANTHROPIC = "anthropic"
TEXT = "text"
UNKNOWN = "unknown"

# A text stream is SSE when it starts with one of these. "retry:" is the longest, so 6 characters
# are enough to decide.
SSE_LINE_PREFIXES = ("data:", "event:", "id:", "retry:", ":")
SSE_DECISION_LENGTH = 6

_ANTHROPIC_EVENT_TYPES = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    }
)


def starts_like_sse(leading_text: str) -> bool:
    """Return True if the start of a text stream is an SSE line.

    A byte-order mark and blank lines before the first line are skipped, as an SSE parser would.
    """
    return leading_text.lstrip("\ufeff\r\n").startswith(SSE_LINE_PREFIXES)


def detect_format(chunks: Sequence[Chunk]) -> str:
    """Return the provider format of the first chunk that shows one, or UNKNOWN.

    Chunks that fit every format, such as Anthropic's `ping`, error events, and Azure's first chunk
    with empty `choices`, are skipped.
    """
    for chunk in chunks:
        found = _format_of(chunk)
        if found is not None:
            return found
    return UNKNOWN


def _format_of(chunk: Chunk) -> str | None:
    data = chunk.data
    kind = data.get("type")
    if isinstance(kind, str):
        if kind.startswith("response."):
            return OPENAI_RESPONSES
        if kind in _ANTHROPIC_EVENT_TYPES:
            return ANTHROPIC

    obj = data.get("object")
    if obj == "chat.completion.chunk":
        return OPENAI_CHAT
    if obj == "text_completion":
        return OPENAI_COMPLETIONS

    for choice in as_list(data.get("choices")):
        choice_dict = as_dict(choice)
        if choice_dict is None:
            continue
        if "delta" in choice_dict:
            return OPENAI_CHAT
        if "text" in choice_dict:
            return OPENAI_COMPLETIONS
    return None
