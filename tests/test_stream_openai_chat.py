"""Tests for chat-completions reassembly: the cases the recorded fixtures do not cover."""

from __future__ import annotations

from typing import Any

from heliconetrace._stream import StreamRecorder, StreamResult


def record(*items: object) -> StreamResult:
    recorder = StreamRecorder()
    for item in items:
        recorder.add(item)
    return recorder.finish()


def chunk(*choices: dict[str, Any], **top: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-test",
        "choices": list(choices),
    }
    data.update(top)
    return data


def choice(index: int, finish_reason: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"index": index, "delta": delta, "finish_reason": finish_reason}


def message(result: StreamResult, index: int = 0) -> dict[str, Any]:
    return result.json["choices"][index]["message"]  # type: ignore[no-any-return]


def tool_delta(**fields: Any) -> dict[str, Any]:
    return {"tool_calls": [fields]}


class TestChoices:
    def test_interleaved(self) -> None:
        """Choices of n > 1 interleaved across chunks are joined by their index."""
        result = record(
            chunk(choice(0, role="assistant", content="A")),
            chunk(choice(1, role="assistant", content="X")),
            chunk(choice(0, content="B")),
            chunk(choice(1, content="Y")),
        )
        assert [message(result, i)["content"] for i in (0, 1)] == ["AB", "XY"]

    def test_sorted(self) -> None:
        """Choices are listed by index, whichever streamed first."""
        result = record(chunk(choice(1, content="X")), chunk(choice(0, content="A")))
        assert [c["index"] for c in result.json["choices"]] == [0, 1]

    def test_several_per_chunk(self) -> None:
        """One chunk may carry entries for several choices."""
        result = record(chunk(choice(0, content="A"), choice(1, content="X")))
        assert [message(result, i)["content"] for i in (0, 1)] == ["A", "X"]

    def test_finish_reason_per_choice(self) -> None:
        """Each choice keeps its own finish reason."""
        result = record(chunk(choice(0, "stop"), choice(1, "length")))
        assert [c["finish_reason"] for c in result.json["choices"]] == ["stop", "length"]


class TestFinishReason:
    def test_later_null(self) -> None:
        """A later chunk's null finish_reason does not replace an earlier one."""
        result = record(chunk(choice(0, "stop", content="A")), chunk(choice(0, None)))
        assert result.json["choices"][0]["finish_reason"] == "stop"

    def test_missing(self) -> None:
        """A stream without a finish reason reports None."""
        assert record(chunk(choice(0, content="A"))).json["choices"][0]["finish_reason"] is None


class TestToolCalls:
    def test_no_index(self) -> None:
        """Deltas without an index continue the last call until a new id starts one."""
        result = record(
            chunk(choice(0, **tool_delta(id="a", type="function", function={"name": "f"}))),
            chunk(choice(0, **tool_delta(function={"arguments": '{"x":'}))),
            chunk(choice(0, **tool_delta(function={"arguments": "1}"}))),
            chunk(choice(0, **tool_delta(id="b", function={"name": "g", "arguments": "{}"}))),
        )
        calls = message(result)["tool_calls"]
        assert [(c["id"], c["function"]["arguments"]) for c in calls] == [
            ("a", '{"x":1}'),
            ("b", "{}"),
        ]

    def test_same_index_new_id(self) -> None:
        """A new id under an index already in use starts a new call."""
        result = record(
            chunk(
                choice(0, **tool_delta(index=0, id="a", function={"name": "f", "arguments": "{}"}))
            ),
            chunk(
                choice(0, **tool_delta(index=0, id="b", function={"name": "g", "arguments": "{}"}))
            ),
        )
        assert [c["function"]["name"] for c in message(result)["tool_calls"]] == ["f", "g"]

    def test_interleaved_indexes(self) -> None:
        """Arguments of parallel calls that alternate between chunks stay with their call."""
        result = record(
            chunk(
                choice(0, **tool_delta(index=0, id="a", function={"name": "f", "arguments": ""}))
            ),
            chunk(
                choice(0, **tool_delta(index=1, id="b", function={"name": "g", "arguments": ""}))
            ),
            chunk(choice(0, **tool_delta(index=0, function={"arguments": "[1"}))),
            chunk(choice(0, **tool_delta(index=1, function={"arguments": "[2"}))),
            chunk(choice(0, **tool_delta(index=0, function={"arguments": "]"}))),
            chunk(choice(0, **tool_delta(index=1, function={"arguments": "]"}))),
        )
        assert [c["function"]["arguments"] for c in message(result)["tool_calls"]] == ["[1]", "[2]"]

    def test_repeated_name(self) -> None:
        """A name repeated in every delta is not doubled."""
        result = record(
            chunk(
                choice(0, **tool_delta(index=0, id="a", function={"name": "f", "arguments": "{"}))
            ),
            chunk(choice(0, **tool_delta(index=0, function={"name": "f", "arguments": "}"}))),
        )
        assert message(result)["tool_calls"][0]["function"]["name"] == "f"

    def test_legacy_function_call(self) -> None:
        """A legacy function_call is joined like a tool call."""
        result = record(
            chunk(choice(0, function_call={"name": "f", "arguments": '{"a"'})),
            chunk(choice(0, function_call={"arguments": ":1}"})),
        )
        assert message(result)["function_call"] == {"name": "f", "arguments": '{"a":1}'}


class TestContent:
    def test_null_content(self) -> None:
        """Content that only ever streamed as null stays null."""
        assert message(record(chunk(choice(0, role="assistant", content=None))))["content"] is None

    def test_mistral_parts(self) -> None:
        """Content sent as typed parts becomes a list of merged parts."""
        thinking = [{"type": "thinking", "thinking": [{"type": "text", "text": "Hm"}]}]
        result = record(
            chunk(choice(0, content="")),
            chunk(choice(0, content=thinking)),
            chunk(
                choice(
                    0, content=[{"type": "thinking", "thinking": [{"type": "text", "text": "m"}]}]
                )
            ),
            chunk(choice(0, content="A")),
            chunk(choice(0, content=[{"type": "text", "text": "B"}])),
        )
        assert message(result)["content"] == [
            {"type": "thinking", "thinking": [{"type": "text", "text": "Hmm"}]},
            {"type": "text", "text": "AB"},
        ]

    def test_reasoning_details(self) -> None:
        """reasoning_details merge by index, and an empty signature does not hide a later one."""
        result = record(
            chunk(
                choice(
                    0,
                    reasoning_details=[
                        {"type": "reasoning.text", "text": "", "signature": "", "index": 0}
                    ],
                )
            ),
            chunk(
                choice(
                    0,
                    reasoning="A",
                    reasoning_details=[{"type": "reasoning.text", "text": "A", "index": 0}],
                )
            ),
            chunk(
                choice(
                    0,
                    reasoning="B",
                    reasoning_details=[{"type": "reasoning.text", "text": "B", "index": 0}],
                )
            ),
            chunk(
                choice(
                    0,
                    reasoning=None,
                    reasoning_details=[{"type": "reasoning.text", "signature": "S", "index": 0}],
                )
            ),
        )
        assert message(result)["reasoning_details"] == [
            {"type": "reasoning.text", "text": "AB", "signature": "S", "index": 0}
        ]

    def test_reasoning_not_doubled(self) -> None:
        """Reasoning repeated in reasoning_details is not added twice to `reasoning`."""
        result = record(
            chunk(
                choice(
                    0,
                    reasoning="A",
                    reasoning_details=[{"type": "reasoning.text", "text": "A", "index": 0}],
                )
            ),
        )
        assert message(result)["reasoning"] == "A"

    def test_logprobs(self) -> None:
        """logprobs.content lists are concatenated across chunks."""
        first = {"index": 0, "delta": {"content": "a"}, "logprobs": {"content": [{"token": "a"}]}}
        second = {"index": 0, "delta": {"content": "b"}, "logprobs": {"content": [{"token": "b"}]}}
        result = record(
            chunk(first), chunk(second), chunk({"index": 0, "delta": {}, "logprobs": None})
        )
        assert result.json["choices"][0]["logprobs"]["content"] == [{"token": "a"}, {"token": "b"}]

    def test_audio(self) -> None:
        """Streamed audio data and transcript are joined."""
        result = record(
            chunk(choice(0, audio={"id": "au", "data": "QU", "transcript": "He"})),
            chunk(choice(0, audio={"data": "JD", "transcript": "llo"})),
        )
        assert message(result)["audio"] == {"id": "au", "data": "QUJD", "transcript": "Hello"}


class TestUsage:
    def test_usage_chunk(self) -> None:
        """Usage from a final chunk with empty choices is kept."""
        usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        result = record(chunk(choice(0, "stop", content="A")), chunk(usage=usage))
        assert result.json["usage"] == usage

    def test_null_usage_ignored(self) -> None:
        """A later `usage: null` does not remove the usage."""
        usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        result = record(chunk(choice(0, "stop"), usage=usage), chunk(usage=None))
        assert result.json["usage"] == usage

    def test_running_totals(self) -> None:
        """When every chunk repeats usage, the last one wins."""
        result = record(
            chunk(choice(0, content="A"), usage={"completion_tokens": 1}),
            chunk(choice(0, content="B"), usage={"completion_tokens": 2}),
        )
        assert result.json["usage"] == {"completion_tokens": 2}

    def test_groq_usage(self) -> None:
        """Usage under x_groq is copied to the top level."""
        result = record(
            chunk(choice(0, "stop"), x_groq={"id": "req", "usage": {"total_tokens": 9}})
        )
        assert result.json["usage"] == {"total_tokens": 9}

    def test_top_level_wins(self) -> None:
        """Top-level usage is preferred over x_groq.usage."""
        result = record(
            chunk(
                choice(0, "stop"), usage={"total_tokens": 1}, x_groq={"usage": {"total_tokens": 9}}
            )
        )
        assert result.json["usage"] == {"total_tokens": 1}


class TestErrors:
    def test_error_chunk(self) -> None:
        """An error chunk mid-stream sets the error."""
        result = record(chunk(choice(0, content="Hi")), {"error": {"message": "boom", "code": 500}})
        assert result.error == {"message": "boom", "code": 500}

    def test_keeps_content(self) -> None:
        """The body keeps what streamed before an error chunk."""
        result = record(chunk(choice(0, content="Hi")), {"error": {"message": "boom"}})
        assert message(result)["content"] == "Hi"

    def test_error_with_choices(self) -> None:
        """An error carried by a chunk that also has choices (OpenRouter) sets the error."""
        failing = chunk(choice(0, "error", content=""), error={"code": 502, "message": "down"})
        result = record(chunk(choice(0, content="Hi")), failing)
        assert result.error == {"code": 502, "message": "down"}

    def test_first_error_kept(self) -> None:
        """The first error of a stream is the one reported."""
        result = record({"error": {"message": "first"}}, {"error": {"message": "second"}})
        assert result.error == {"message": "first"}

    def test_sse_error_event(self) -> None:
        """An SSE `event: error` carrying a bare error object sets the error."""
        body = (
            'data: {"object":"chat.completion.chunk","choices":[]}\n\n'
            'event: error\ndata: {"message":"boom"}\n\n'
        )
        assert record(body).error == {"message": "boom"}


class TestEnvelope:
    def test_empty_first_chunk(self) -> None:
        """An empty id and model in the first chunk (Azure) do not win."""
        first = {"id": "", "model": "", "created": 0, "object": "", "choices": []}
        result = record(first, chunk(choice(0, content="Hi")))
        assert (result.json["id"], result.json["model"], result.json["created"]) == (
            "chatcmpl-1",
            "gpt-test",
            1,
        )

    def test_provider_fields(self) -> None:
        """Provider additions at the top level are kept."""
        assert record(chunk(choice(0, content="A"), provider="Google")).json["provider"] == "Google"

    def test_obfuscation_dropped(self) -> None:
        """OpenAI's obfuscation padding is not kept."""
        assert "obfuscation" not in record(chunk(choice(0, content="A"), obfuscation="xyz")).json

    def test_missing_done(self) -> None:
        """A raw stream without `[DONE]` is reassembled in full."""
        body = 'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
        assert message(record(body))["content"] == "Hi"
