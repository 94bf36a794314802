"""Tests for legacy completions reassembly beyond the recorded fixture."""

from __future__ import annotations

from typing import Any

from heliconetrace._stream import StreamRecorder, StreamResult


def record(*items: object) -> StreamResult:
    recorder = StreamRecorder()
    for item in items:
        recorder.add(item)
    return recorder.finish()


def chunk(*choices: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "model": "m",
        "choices": list(choices),
        **top,
    }


class TestCompletions:
    def test_interleaved(self) -> None:
        """Choices of n > 1 are joined by their index."""
        result = record(
            chunk({"index": 0, "text": "a"}),
            chunk({"index": 1, "text": "x"}),
            chunk({"index": 0, "text": "b"}),
        )
        assert [c["text"] for c in result.json["choices"]] == ["ab", "x"]

    def test_logprobs(self) -> None:
        """Legacy logprobs lists are concatenated member by member."""
        result = record(
            chunk(
                {"index": 0, "text": "a", "logprobs": {"tokens": ["a"], "token_logprobs": [-1.0]}}
            ),
            chunk(
                {"index": 0, "text": "b", "logprobs": {"tokens": ["b"], "token_logprobs": [-2.0]}}
            ),
        )
        assert result.json["choices"][0]["logprobs"] == {
            "tokens": ["a", "b"],
            "token_logprobs": [-1.0, -2.0],
        }

    def test_usage(self) -> None:
        """Usage in the last chunk is kept."""
        usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        result = record(
            chunk({"index": 0, "text": "a", "finish_reason": "stop"}), chunk(usage=usage)
        )
        assert result.json["usage"] == usage

    def test_finish_reason(self) -> None:
        """A later null finish_reason does not replace an earlier one."""
        result = record(
            chunk({"index": 0, "text": "a", "finish_reason": "length"}),
            chunk({"index": 0, "text": "", "finish_reason": None}),
        )
        assert result.json["choices"][0]["finish_reason"] == "length"

    def test_without_object(self) -> None:
        """Chunks without `object` are recognised by their `text` choices."""
        assert record({"choices": [{"index": 0, "text": "a"}]}).format == "openai-completions"
