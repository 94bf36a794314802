"""Tests for telling SSE from plain text, and for recognising the provider format."""

from __future__ import annotations

from typing import Any

import pytest

from heliconetrace._stream._chunk import Chunk
from heliconetrace._stream._detect import detect_format, starts_like_sse


def chunks(*payloads: dict[str, Any]) -> list[Chunk]:
    return [Chunk(payload, None, index) for index, payload in enumerate(payloads)]


class TestStartsLikeSse:
    @pytest.mark.parametrize(
        "text", ["data: {}", "event: x", "id: 1", "retry: 5", ": hi", "data:{}"]
    )
    def test_sse(self, text: str) -> None:
        """Text starting with an SSE field or comment is SSE."""
        assert starts_like_sse(text)

    @pytest.mark.parametrize("text", ["\ufeffdata: {}", "\n\ndata: {}", "\r\nevent: x"])
    def test_leading_breaks(self, text: str) -> None:
        """A byte-order mark or blank lines before the first field are skipped."""
        assert starts_like_sse(text)

    @pytest.mark.parametrize("text", ["Hello", "data", "database", " data: x", "{}", ""])
    def test_text(self, text: str) -> None:
        """Anything else is plain text."""
        assert not starts_like_sse(text)


class TestDetectFormat:
    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            ({"object": "chat.completion.chunk", "choices": []}, "openai-chat"),
            ({"choices": [{"index": 0, "delta": {}}]}, "openai-chat"),
            ({"object": "text_completion", "choices": []}, "openai-completions"),
            ({"type": "response.created", "response": {}}, "openai-responses"),
            ({"type": "message_start", "message": {}}, "anthropic"),
            ({"type": "content_block_delta", "index": 0, "delta": {}}, "anthropic"),
        ],
    )
    def test_format(self, payload: dict[str, Any], expected: str) -> None:
        """Each format is recognised from one of its chunks."""
        assert detect_format(chunks(payload)) == expected

    def test_azure_first_chunk(self) -> None:
        """Azure's first chunk, with empty object and choices, is skipped."""
        first = {"id": "", "object": "", "choices": [], "prompt_filter_results": []}
        second = {"object": "chat.completion.chunk", "choices": []}
        assert detect_format(chunks(first, second)) == "openai-chat"

    def test_ping_skipped(self) -> None:
        """Anthropic's ping fits every format and is skipped."""
        assert detect_format(chunks({"type": "ping"}, {"type": "message_stop"})) == "anthropic"

    def test_error_only(self) -> None:
        """A stream of only error events has no format."""
        assert detect_format(chunks({"type": "error", "error": {}})) == "unknown"

    def test_empty(self) -> None:
        """No chunks give no format."""
        assert detect_format([]) == "unknown"
