"""Tests for StreamRecorder: recording, input detection, timing, text bodies and bad input."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pydantic
import pytest
from anthropic.lib.streaming import TextEvent
from openai.lib.streaming.chat import ChunkEvent, ContentDeltaEvent
from openai.types.chat import ChatCompletionChunk

import heliconetrace._stream
from heliconetrace._stream import StreamRecorder, StreamResult, _recorder

FIXTURES = Path(__file__).parent / "fixtures" / "providers"


def record(*items: object) -> StreamResult:
    recorder = StreamRecorder()
    for item in items:
        recorder.add(item)
    return recorder.finish()


def chat_chunk(
    delta: dict[str, Any], finish_reason: str | None = None, **top: Any
) -> dict[str, Any]:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    chunk.update(top)
    return chunk


def sse(*payloads: object) -> str:
    return "".join(f"data: {json.dumps(payload)}\n\n" for payload in payloads)


def parse_text_body(text_body: str) -> list[Any]:
    """Parse a body the way Helicone's OpenAI stream parser does (split lines, strip `data:`)."""
    lines = [line for line in text_body.split("\n") if line and not line.startswith("event:")]
    payloads = [line.replace("data:", "", 1).strip() for line in lines]
    return [json.loads(payload) for payload in payloads if payload != "[DONE]"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the recorder's clock return 0.0, 1.0, 2.0, ... so item times equal item indexes."""
    ticks: Iterator[int] = itertools.count()
    monkeypatch.setattr(_recorder, "perf_counter", lambda: float(next(ticks)))


class TestPublicNames:
    def test_all(self) -> None:
        """The package exports exactly the recorder and its result."""
        assert heliconetrace._stream.__all__ == ["StreamRecorder", "StreamResult"]

    def test_result_frozen(self) -> None:
        """A StreamResult cannot be changed after finish."""
        result = record()
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.format = "text"  # type: ignore[misc]


class _Untouchable:
    """An item that fails on any attribute access, to prove add never inspects items."""

    def __getattribute__(self, name: str) -> Any:
        raise AssertionError(f"item inspected: {name}")


class TestAdd:
    def test_no_inspection(self) -> None:
        """add stores an item without touching it."""
        recorder = StreamRecorder()
        recorder.add(_Untouchable())
        assert type(recorder._items[0]) is _Untouchable

    @pytest.mark.usefixtures("clock")
    def test_times(self) -> None:
        """add records one perf_counter time per item."""
        recorder = StreamRecorder()
        for item in ("a", "b", "c"):
            recorder.add(item)
        assert recorder._times == [0.0, 1.0, 2.0]

    def test_item_count(self) -> None:
        """item_count counts every add, empty and skipped items included."""
        assert record(None, "", b"", "x", object()).item_count == 5


@pytest.mark.usefixtures("clock")
class TestFirstContentAt:
    def test_role_only_skipped(self) -> None:
        """A role-only first chunk is not content."""
        result = record(chat_chunk({"role": "assistant"}), chat_chunk({"content": "Hi"}))
        assert result.first_content_at == 1.0

    def test_empty_content_skipped(self) -> None:
        """An empty content string is not content."""
        result = record(
            chat_chunk({"role": "assistant", "content": ""}), chat_chunk({"content": "Hi"})
        )
        assert result.first_content_at == 1.0

    def test_tool_call_name(self) -> None:
        """A tool-call name is content."""
        call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f"}}
        result = record(chat_chunk({"role": "assistant"}), chat_chunk({"tool_calls": [call]}))
        assert result.first_content_at == 1.0

    @pytest.mark.parametrize(
        "delta",
        [
            {"refusal": "No."},
            {"reasoning_content": "Hmm"},
            {"reasoning": "Hmm"},
            {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "Hmm"}]}]},
        ],
        ids=["refusal", "reasoning_content", "reasoning", "mistral-thinking"],
    )
    def test_other_content(self, delta: dict[str, Any]) -> None:
        """Refusals and reasoning are content."""
        result = record(chat_chunk({"role": "assistant"}), chat_chunk(delta))
        assert result.first_content_at == 1.0

    def test_none(self) -> None:
        """A stream without content has no first content time."""
        result = record(chat_chunk({"role": "assistant"}), chat_chunk({}, "stop"))
        assert result.first_content_at is None

    def test_raw_piece(self) -> None:
        """For raw SSE, the time is that of the piece that completed the content event."""
        body = sse(chat_chunk({"role": "assistant"}), chat_chunk({"content": "Hi"}))
        split = body.index("Hi")
        result = record(body[:split], body[split:-1], body[-1:])
        assert result.first_content_at == 2.0

    def test_anthropic(self) -> None:
        """Anthropic's message_start, empty block start and ping are not content."""
        events = [
            {"type": "message_start", "message": {"id": "m", "content": [], "model": "c"}},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {"type": "ping"},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "H"},
            },
        ]
        assert record(*events).first_content_at == 3.0

    def test_anthropic_thinking(self) -> None:
        """An Anthropic thinking delta is content."""
        events = [
            {"type": "message_start", "message": {"id": "m", "content": [], "model": "c"}},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": "Hmm"},
            },
        ]
        assert record(*events).first_content_at == 1.0

    def test_responses(self) -> None:
        """Responses lifecycle events and an empty message item are not content."""
        response = {"id": "r", "object": "response", "status": "in_progress", "output": []}
        events = [
            {"type": "response.created", "response": response},
            {"type": "response.in_progress", "response": response},
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {"id": "m", "type": "message", "content": [], "role": "assistant"},
            },
            {
                "type": "response.content_part.added",
                "output_index": 0,
                "content_index": 0,
                "item_id": "m",
                "part": {"type": "output_text", "text": "", "annotations": []},
            },
            {
                "type": "response.output_text.delta",
                "output_index": 0,
                "content_index": 0,
                "item_id": "m",
                "delta": "The",
            },
        ]
        assert record(*events).first_content_at == 4.0

    def test_text_fragment(self) -> None:
        """For plain text, the time is that of the first non-empty fragment."""
        assert record("", "Hello", " world").first_content_at == 1.0


class TestPlainText:
    def test_format(self) -> None:
        """Str items that do not start like SSE are plain text."""
        assert record("Hello", " world").format == "text"

    def test_content(self) -> None:
        """The message content is the joined text."""
        result = record("Hello", "", " world")
        assert result.json["choices"][0]["message"]["content"] == "Hello world"

    def test_object(self) -> None:
        """The body is a chat.completion."""
        assert record("Hello").json["object"] == "chat.completion"

    def test_chunks(self) -> None:
        """The body is one chat.completion.chunk per non-empty fragment."""
        chunks = parse_text_body(record("Hello", "", " world").text_body)
        assert [chunk["choices"][0]["delta"]["content"] for chunk in chunks] == ["Hello", " world"]

    def test_first_chunk_role(self) -> None:
        """The first synthesized chunk carries the assistant role."""
        chunks = parse_text_body(record("Hello", " world").text_body)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"

    def test_bytes(self) -> None:
        """Byte fragments are decoded, even with a character split between them."""
        encoded = "it\u2019s".encode()
        result = record(encoded[:3], encoded[3:])
        assert result.json["choices"][0]["message"]["content"] == "it\u2019s"

    def test_data_word(self) -> None:
        """Text starting with the word "data" but no colon is plain text."""
        assert record("data", "base rows").format == "text"

    def test_split_prefix(self) -> None:
        """An SSE body split inside its first `data:` is still SSE."""
        body = sse(chat_chunk({"content": "Hi"}))
        assert record(body[:2], body[2:]).format == "openai-chat"

    def test_no_model(self) -> None:
        """Plain text reports no model."""
        assert record("Hello").model is None

    def test_no_usage(self) -> None:
        """Plain text reports no usage."""
        assert record("Hello").usage_present is False


class TestEmpty:
    @pytest.mark.parametrize(
        ("field", "expected"),
        [
            ("text_body", ""),
            ("json", {}),
            ("error", None),
            ("format", "unknown"),
            ("first_content_at", None),
            ("model", None),
            ("usage_present", False),
            ("item_count", 0),
        ],
    )
    def test_no_items(self, field: str, expected: object) -> None:
        """A stream with no items gives an empty result."""
        assert getattr(record(), field) == expected

    def test_only_empty_items(self) -> None:
        """A stream of None and empty strings is unknown."""
        assert record(None, "", b"").format == "unknown"

    def test_only_done(self) -> None:
        """A body with only `[DONE]` is unknown and kept as text."""
        result = record("data: [DONE]\n\n")
        assert (result.format, result.text_body) == ("unknown", "data: [DONE]\n\n")


class TestBadInput:
    def test_malformed_json(self) -> None:
        """A malformed `data:` line is skipped and the rest reassembled."""
        body = (
            sse(chat_chunk({"content": "Hel"}))
            + "data: {not json\n\n"
            + sse(chat_chunk({"content": "lo"}, "stop"))
        )
        assert record(body).json["choices"][0]["message"]["content"] == "Hello"

    def test_malformed_kept_in_body(self) -> None:
        """A malformed `data:` line stays in the raw body."""
        body = "data: {not json\n\n"
        assert record(body).text_body == body

    @pytest.mark.parametrize("payload", ["[1, 2]", "42", '"text"', "null", "[" * 100_000])
    def test_not_an_object(self, payload: str) -> None:
        """JSON that is not an object, or too deeply nested to parse, is skipped."""
        assert record(f"data: {payload}\n\n").format == "unknown"

    @pytest.mark.parametrize(
        "chunk",
        [
            {"choices": "oops"},
            {"choices": [None, 3, "x"]},
            {"choices": [{"index": "0", "delta": []}]},
            {"choices": [{"index": 0, "delta": {"content": 5, "tool_calls": {"a": 1}}}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [None, {"index": [1]}]}}]},
            {"choices": [{"index": 0, "delta": {"reasoning_details": [{"index": {}}]}}]},
            {"object": "chat.completion.chunk", "usage": [1], "x_groq": "y", "error": "boom"},
            {"type": "content_block_delta", "index": "x", "delta": "y"},
            {"type": "message_start", "message": []},
            {"type": "message_delta", "delta": None, "usage": 5},
            {"type": "response.output_text.delta", "output_index": "a", "delta": 7},
            {"type": "response.completed", "response": {"output": "x", "usage": 3}},
            {"type": "response.content_part.added", "content_index": -4, "part": {}},
        ],
    )
    def test_odd_shapes(self, chunk: dict[str, Any]) -> None:
        """Fields of unexpected types never raise."""
        assert isinstance(record(chunk).json, dict)

    def test_objects_skipped(self) -> None:
        """An object that is not a chunk is skipped, never converted with str()."""

        class Secret:
            def __str__(self) -> str:
                return "SECRET"

            __repr__ = __str__

        result = record(chat_chunk({"content": "Hi"}), Secret())
        assert "SECRET" not in result.text_body

    def test_failing_model_dump(self) -> None:
        """An object whose model_dump raises is skipped."""

        class Broken:
            def model_dump(self, **options: Any) -> dict[str, Any]:
                raise RuntimeError("broken")

        assert record(Broken(), chat_chunk({"content": "Hi"})).format == "openai-chat"

    def test_unserializable_value(self) -> None:
        """A chunk dict holding a value JSON cannot encode is left out of the body."""
        bad = chat_chunk({"content": "Hi"}, extra=object())
        result = record(bad, chat_chunk({"content": "!"}))
        assert len(parse_text_body(result.text_body)) == 1

    def test_mixed_kinds(self) -> None:
        """Items of another kind than the first are skipped."""
        result = record(chat_chunk({"content": "Hi"}), "data: {}\n\n", b"x")
        assert result.json["choices"][0]["message"]["content"] == "Hi"

    def test_inputs_unchanged(self) -> None:
        """finish never changes the dicts the handler yielded."""
        path = FIXTURES / "anthropic-messages-stream-tool-use.sse"
        payloads = [
            json.loads(line[5:])
            for line in path.read_text().split("\n")
            if line.startswith("data:")
        ]
        before = copy.deepcopy(payloads)
        record(*payloads)
        assert payloads == before


def _mutate(value: Any, rng: random.Random) -> Any:
    """Return `value` with some members replaced by values of the wrong type."""
    replacements: list[Any] = [None, 0, -1, "", "x", [], {}, [None], {"a": None}, True, 1.5]
    if isinstance(value, dict):
        return {
            key: rng.choice(replacements) if rng.random() < 0.15 else _mutate(item, rng)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            rng.choice(replacements) if rng.random() < 0.15 else _mutate(item, rng)
            for item in value
        ]
    return value


def _fixture_payloads() -> list[tuple[str, list[dict[str, Any]]]]:
    streams = []
    for path in sorted(FIXTURES.glob("*.sse")) + sorted(FIXTURES.glob("*.chunks.jsonl")):
        lines = path.read_text(encoding="utf-8").split("\n")
        if path.suffix == ".jsonl":
            payloads = [json.loads(line) for line in lines if line]
        else:
            texts = [line[5:].strip() for line in lines if line.startswith("data:")]
            payloads = [json.loads(text) for text in texts if text != "[DONE]"]
        streams.append((path.name, payloads))
    return streams


class TestFuzz:
    @pytest.mark.parametrize(("name", "payloads"), _fixture_payloads())
    @pytest.mark.parametrize("seed", range(5))
    def test_mutated_chunks(self, name: str, payloads: list[dict[str, Any]], seed: int) -> None:
        """Recorded streams with members of the wrong type reassemble without raising."""
        rng = random.Random(f"{name}-{seed}")
        mutated = [_mutate(payload, rng) for payload in payloads]
        assert isinstance(record(*mutated).json, dict)

    @pytest.mark.parametrize(("name", "payloads"), _fixture_payloads())
    @pytest.mark.parametrize("seed", range(3))
    def test_mutated_body(self, name: str, payloads: list[dict[str, Any]], seed: int) -> None:
        """Raw bodies with bytes flipped, dropped or cut reassemble without raising."""
        body = bytearray(sse(*payloads).encode())
        rng = random.Random(f"{name}-{seed}")
        for _ in range(len(body) // 50):
            position = rng.randrange(len(body))
            body[position] = rng.randrange(256)
        cut = bytes(body[: rng.randrange(len(body))])
        assert isinstance(record(cut).json, dict)


class TestTextBody:
    def test_chat_lines(self) -> None:
        """Chat chunks become `data:` lines, each followed by a blank line, without `[DONE]`."""
        chunk = chat_chunk({"content": "Hi"})
        compact = json.dumps(chunk, separators=(",", ":"))
        assert record(chunk).text_body == f"data: {compact}\n\n"

    def test_unicode_kept(self) -> None:
        """Non-ASCII text is written as is, not escaped."""
        assert "\U0001f60a" in record(chat_chunk({"content": "\U0001f60a"})).text_body

    def test_anthropic_event_lines(self) -> None:
        """Anthropic chunks get an `event:` line naming their type."""
        event = {"type": "message_stop"}
        result = record({"type": "message_start", "message": {"id": "m", "content": []}}, event)
        assert result.text_body.split("\n")[3] == "event: message_stop"

    def test_responses_event_lines(self) -> None:
        """Responses chunks get an `event:` line naming their type."""
        event = {"type": "response.created", "response": {"id": "r", "output": []}}
        assert record(event).text_body.startswith("event: response.created\ndata: ")

    def test_raw_comments_kept(self) -> None:
        """A raw body keeps its comments and `[DONE]`."""
        body = ": ping\n\n" + sse(chat_chunk({"content": "Hi"})) + "data: [DONE]\n\n"
        assert record(body.encode()).text_body == body


class _PlainModel(pydantic.BaseModel):
    id: str
    object: str = "chat.completion.chunk"
    choices: list[dict[str, Any]] = []


class _ChunkMapping(Mapping[str, Any]):
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class TestChunkObjects:
    def test_openai_chunk(self) -> None:
        """An openai ChatCompletionChunk is read through to_dict."""
        chunk = ChatCompletionChunk.model_validate(chat_chunk({"content": "Hi"}))
        assert record(chunk).json["choices"][0]["message"]["content"] == "Hi"

    def test_openai_chunk_event(self) -> None:
        """The chat stream helper's chunk event is unwrapped to its chunk."""
        chunk = ChatCompletionChunk.model_validate(chat_chunk({"content": "Hi"}))
        event = ChunkEvent.construct(type="chunk", chunk=chunk, snapshot=None)
        assert parse_text_body(record(event).text_body) == [chat_chunk({"content": "Hi"})]

    def test_openai_helper_events(self) -> None:
        """The chat stream helper's content events are left out of the body."""
        chunk = ChatCompletionChunk.model_validate(chat_chunk({"content": "Hi"}))
        delta = ContentDeltaEvent.construct(type="content.delta", delta="Hi", snapshot="Hi")
        result = record(ChunkEvent.construct(type="chunk", chunk=chunk, snapshot=None), delta)
        assert parse_text_body(result.text_body) == [chat_chunk({"content": "Hi"})]

    def test_anthropic_text_event(self) -> None:
        """The messages stream helper's text event does not double the text."""
        start = {"type": "message_start", "message": {"id": "m", "content": [], "model": "c"}}
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hi"},
        }
        text_event = TextEvent(type="text", text="Hi", snapshot="Hi")
        result = record(start, delta, text_event)
        assert result.json["content"] == [{"type": "text", "text": "Hi"}]

    def test_plain_pydantic(self) -> None:
        """Another pydantic model is read with model_dump, without unset fields."""
        assert parse_text_body(record(_PlainModel(id="x")).text_body) == [{"id": "x"}]

    def test_mapping(self) -> None:
        """A mapping that is not a dict is read as a dict."""
        chunk = _ChunkMapping(chat_chunk({"content": "Hi"}))
        assert record(chunk).json["choices"][0]["message"]["content"] == "Hi"


class TestUnknownFormat:
    def test_error_only(self) -> None:
        """A stream holding only an error event reports the error."""
        body = 'event: error\ndata: {"error": {"type": "overloaded_error"}}\n\n'
        assert record(body).error == {"type": "overloaded_error"}

    def test_format(self) -> None:
        """JSON of no known shape gives the unknown format and an empty body."""
        result = record({"foo": 1, "model": "m"})
        assert (result.format, result.json) == ("unknown", {})

    def test_model(self) -> None:
        """The unknown format still reports a top-level model."""
        assert record({"foo": 1, "model": "m"}).model == "m"
