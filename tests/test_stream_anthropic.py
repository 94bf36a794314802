"""Tests for Anthropic Messages reassembly: thinking, errors, cut-off tool input, SDK helpers."""

from __future__ import annotations

from typing import Any

from anthropic.lib.streaming import ContentBlockStopEvent, InputJsonEvent, TextEvent

from heliconetrace._stream import StreamRecorder, StreamResult

START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    },
}


def record(*items: object) -> StreamResult:
    recorder = StreamRecorder()
    for item in items:
        recorder.add(item)
    return recorder.finish()


def event_types(result: StreamResult) -> list[str]:
    """Return the `event:` names of the result's body, in order."""
    lines = result.text_body.split("\n")
    return [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": fields}


def message_delta(stop_reason: str, **usage: Any) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }


def thinking_stream() -> list[dict[str, Any]]:
    return [
        START,
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, type="thinking_delta", thinking="Let me "),
        delta(0, type="thinking_delta", thinking="think."),
        delta(0, type="signature_delta", signature="c2lnbmF0dXJl"),
        {"type": "content_block_stop", "index": 0},
        block_start(1, {"type": "text", "text": ""}),
        delta(1, type="text_delta", text="Answer."),
        {"type": "content_block_stop", "index": 1},
        message_delta("end_turn", output_tokens=42),
        {"type": "message_stop"},
    ]


class TestThinking:
    def test_thinking_block(self) -> None:
        """Thinking deltas and the signature build one thinking block."""
        block = record(*thinking_stream()).json["content"][0]
        assert block == {
            "type": "thinking",
            "thinking": "Let me think.",
            "signature": "c2lnbmF0dXJl",
        }

    def test_text_block(self) -> None:
        """The text block after the thinking block keeps its own text."""
        assert record(*thinking_stream()).json["content"][1] == {"type": "text", "text": "Answer."}

    def test_redacted_thinking(self) -> None:
        """A redacted thinking block is kept as it started."""
        block = {"type": "redacted_thinking", "data": "abc"}
        assert record(START, block_start(0, block)).json["content"] == [block]


class TestUsage:
    def test_output_tokens_replaced(self) -> None:
        """message_delta's cumulative output_tokens replaces message_start's count."""
        assert record(*thinking_stream()).json["usage"] == {"input_tokens": 10, "output_tokens": 42}

    def test_later_fields(self) -> None:
        """Usage fields that message_delta adds are merged, and its nulls are ignored."""
        result = record(
            START,
            message_delta(
                "end_turn", output_tokens=5, input_tokens=None, cache_read_input_tokens=3
            ),
        )
        assert result.json["usage"] == {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 3,
        }

    def test_stop_reason(self) -> None:
        """message_delta sets the stop reason."""
        assert record(*thinking_stream()).json["stop_reason"] == "end_turn"


class TestToolInput:
    def test_parsed(self) -> None:
        """input_json_delta pieces are joined and parsed into `input`."""
        result = record(
            START,
            block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}),
            delta(0, type="input_json_delta", partial_json=""),
            delta(0, type="input_json_delta", partial_json='{"a": '),
            delta(0, type="input_json_delta", partial_json="1}"),
        )
        assert result.json["content"][0]["input"] == {"a": 1}

    def test_no_pieces(self) -> None:
        """A tool call with only empty pieces keeps the input it started with."""
        result = record(
            START,
            block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}),
            delta(0, type="input_json_delta", partial_json=""),
        )
        assert result.json["content"][0]["input"] == {}

    def test_cut_off(self) -> None:
        """Tool input cut off mid-JSON is kept as its raw text."""
        result = record(
            START,
            block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}),
            delta(0, type="input_json_delta", partial_json='{"a": '),
        )
        assert result.json["content"][0]["input"] == '{"a": '


class TestErrors:
    def test_error_event(self) -> None:
        """An error event mid-stream sets the error."""
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        result = record(
            START,
            block_start(0, {"type": "text", "text": ""}),
            delta(0, type="text_delta", text="Hi"),
            error,
        )
        assert result.error == {"type": "overloaded_error", "message": "Overloaded"}

    def test_keeps_content(self) -> None:
        """The body keeps the text streamed before the error."""
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        result = record(
            START,
            block_start(0, {"type": "text", "text": ""}),
            delta(0, type="text_delta", text="Hi"),
            error,
        )
        assert result.json["content"] == [{"type": "text", "text": "Hi"}]

    def test_ping_not_error(self) -> None:
        """A ping is not an error."""
        assert record(START, {"type": "ping"}).error is None


class TestDegraded:
    def test_no_message_start(self) -> None:
        """Deltas without message_start or block starts still build a message."""
        result = record(delta(0, type="text_delta", text="Hi"))
        assert result.json == {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "Hi"}],
        }

    def test_citations(self) -> None:
        """Citation deltas are collected on their text block."""
        citation = {"type": "char_location", "cited_text": "x"}
        result = record(
            START,
            block_start(0, {"type": "text", "text": ""}),
            delta(0, type="citations_delta", citation=citation),
        )
        assert result.json["content"][0]["citations"] == [citation]


class TestSdkEvents:
    def test_block_stop_snapshot(self) -> None:
        """A content_block_stop that carries the finished block replaces the built block."""
        stop = ContentBlockStopEvent.construct(
            type="content_block_stop",
            index=0,
            content_block={"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
        )
        result = record(
            START,
            block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}),
            delta(0, type="input_json_delta", partial_json='{"a": 1}'),
            stop,
        )
        assert result.json["content"][0]["input"] == {"a": 1}

    def test_text_event_dropped(self) -> None:
        """The helper's text event is left out of the body."""
        result = record(
            START,
            block_start(0, {"type": "text", "text": ""}),
            delta(0, type="text_delta", text="Hi"),
            TextEvent(type="text", text="Hi", snapshot="Hi"),
        )
        assert event_types(result) == [
            "message_start",
            "content_block_start",
            "content_block_delta",
        ]

    def test_input_json_event_dropped(self) -> None:
        """The helper's input_json event is left out of the body."""
        result = record(
            START,
            block_start(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}),
            delta(0, type="input_json_delta", partial_json="{}"),
            InputJsonEvent(type="input_json", partial_json="{}", snapshot={}),
        )
        assert event_types(result) == [
            "message_start",
            "content_block_start",
            "content_block_delta",
        ]
