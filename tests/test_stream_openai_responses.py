"""Tests for Responses API reassembly: streams cut short, failed, or without final snapshots."""

from __future__ import annotations

from typing import Any

from heliconetrace._stream import StreamRecorder, StreamResult

RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "status": "in_progress",
    "model": "gpt-test",
    "output": [],
}


def record(*items: object) -> StreamResult:
    recorder = StreamRecorder()
    for item in items:
        recorder.add(item)
    return recorder.finish()


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": f"response.{kind}", **fields}


def message_events(*deltas: str) -> list[dict[str, Any]]:
    """Return the events of one streamed message, without its `.done` events."""
    item = {
        "id": "msg_1",
        "type": "message",
        "status": "in_progress",
        "content": [],
        "role": "assistant",
    }
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    events = [
        event("created", response=RESPONSE),
        event("output_item.added", output_index=0, item=item),
        event("content_part.added", output_index=0, content_index=0, item_id="msg_1", part=part),
    ]
    for delta in deltas:
        events.append(
            event(
                "output_text.delta", output_index=0, content_index=0, item_id="msg_1", delta=delta
            )
        )
    return events


def function_events(*deltas: str) -> list[dict[str, Any]]:
    item = {
        "id": "fc_1",
        "type": "function_call",
        "call_id": "call_1",
        "name": "f",
        "arguments": "",
    }
    events = [
        event("created", response=RESPONSE),
        event("output_item.added", output_index=0, item=item),
    ]
    for delta in deltas:
        events.append(
            event("function_call_arguments.delta", output_index=0, item_id="fc_1", delta=delta)
        )
    return events


class TestCutShort:
    def test_text(self) -> None:
        """Output text is rebuilt from deltas when the stream ends before response.completed."""
        result = record(*message_events("The", " end"))
        assert result.json["output"][0]["content"][0]["text"] == "The end"

    def test_status(self) -> None:
        """A stream cut short keeps the last snapshot's status."""
        assert record(*message_events("The")).json["status"] == "in_progress"

    def test_function_arguments(self) -> None:
        """Function-call arguments are rebuilt from deltas."""
        result = record(*function_events('{"a"', ":1}"))
        assert result.json["output"][0]["arguments"] == '{"a":1}'

    def test_no_added_events(self) -> None:
        """Deltas without `.added` events still build an output item."""
        result = record(
            event("output_text.delta", output_index=0, content_index=0, item_id="m", delta="Hi")
        )
        assert result.json["output"] == [
            {"type": "message", "id": "m", "content": [{"type": "output_text", "text": "Hi"}]}
        ]

    def test_logprobs(self) -> None:
        """Per-delta logprobs are concatenated."""
        events = message_events()
        for token in ("a", "b"):
            events.append(
                event(
                    "output_text.delta",
                    output_index=0,
                    content_index=0,
                    item_id="msg_1",
                    delta=token,
                    logprobs=[{"token": token}],
                )
            )
        part = record(*events).json["output"][0]["content"][0]
        assert part["logprobs"] == [{"token": "a"}, {"token": "b"}]


class TestDoneEvents:
    def test_text_done(self) -> None:
        """output_text.done replaces the streamed text instead of adding to it."""
        events = message_events("The", " end")
        events.append(
            event(
                "output_text.done", output_index=0, content_index=0, item_id="msg_1", text="The end"
            )
        )
        assert record(*events).json["output"][0]["content"][0]["text"] == "The end"

    def test_arguments_done(self) -> None:
        """function_call_arguments.done replaces the streamed arguments."""
        events = function_events("{}")
        events.append(
            event("function_call_arguments.done", output_index=0, item_id="fc_1", arguments="{}")
        )
        assert record(*events).json["output"][0]["arguments"] == "{}"

    def test_item_done(self) -> None:
        """output_item.done replaces the item built from deltas."""
        done = {
            "id": "fc_1",
            "type": "function_call",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        }
        events = [*function_events("{", "}"), event("output_item.done", output_index=0, item=done)]
        assert record(*events).json["output"] == [done]

    def test_completed_wins(self) -> None:
        """The response.completed object is the body when it has output."""
        final = {**RESPONSE, "status": "completed", "output": [{"type": "message", "id": "x"}]}
        events = [*message_events("Hi"), event("completed", response=final)]
        assert record(*events).json == final


class TestReasoning:
    def test_summary(self) -> None:
        """Reasoning summary text is rebuilt from its deltas."""
        item = {"id": "rs_1", "type": "reasoning", "summary": []}
        result = record(
            event("output_item.added", output_index=0, item=item),
            event(
                "reasoning_summary_part.added",
                output_index=0,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            ),
            event("reasoning_summary_text.delta", output_index=0, summary_index=0, delta="Think"),
            event("reasoning_summary_text.delta", output_index=0, summary_index=0, delta="ing"),
        )
        assert result.json["output"][0]["summary"] == [{"type": "summary_text", "text": "Thinking"}]

    def test_refusal(self) -> None:
        """A streamed refusal becomes a refusal part."""
        result = record(
            event("refusal.delta", output_index=0, content_index=0, item_id="m", delta="No"),
            event("refusal.delta", output_index=0, content_index=0, item_id="m", delta="."),
        )
        assert result.json["output"][0]["content"] == [{"type": "refusal", "refusal": "No."}]


class TestErrors:
    def test_error_event(self) -> None:
        """An error event sets the error and the body keeps the output before it."""
        events = [
            *message_events("Hi"),
            {
                "type": "error",
                "code": "server_error",
                "message": "boom",
                "param": None,
                "sequence_number": 5,
            },
        ]
        result = record(*events)
        assert result.error == {"code": "server_error", "message": "boom", "param": None}

    def test_output_kept(self) -> None:
        """The body keeps the output streamed before the error."""
        events = [*message_events("Hi"), {"type": "error", "error": {"code": "server_error"}}]
        assert record(*events).json["output"][0]["content"][0]["text"] == "Hi"

    def test_failed_only(self) -> None:
        """response.failed without an error event gives the response's error."""
        failed = {**RESPONSE, "status": "failed", "error": {"code": "server_error", "message": "x"}}
        result = record(event("created", response=RESPONSE), event("failed", response=failed))
        assert result.error == {"code": "server_error", "message": "x"}

    def test_failed_keeps_streamed_output(self) -> None:
        """A failed response with empty output keeps the output built from deltas."""
        failed = {**RESPONSE, "status": "failed", "error": {"code": "server_error"}}
        result = record(*message_events("Hi"), event("failed", response=failed))
        assert result.json["output"][0]["content"][0]["text"] == "Hi"

    def test_incomplete_not_error(self) -> None:
        """response.incomplete is not an error."""
        incomplete = {
            **RESPONSE,
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
        }
        assert record(event("incomplete", response=incomplete)).error is None
