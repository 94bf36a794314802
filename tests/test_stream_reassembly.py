"""Reassembly of the recorded provider streams in tests/fixtures/providers.

Each stream is fed in every way a handler can yield it:

- the whole body as bytes, the body cut at random byte offsets, or one byte per item;
- the decoded body cut at random character offsets;
- parsed chunk dicts, or openai and anthropic SDK objects.

The random cuts are seeded, so a failure repeats. Every way must give the result that
PROVENANCE.md states for the recording.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import pydantic
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent

from heliconetrace._stream import StreamRecorder, StreamResult

FIXTURES = Path(__file__).parent / "fixtures" / "providers"
STREAM_FIXTURES = sorted(
    path.name for pattern in ("*.sse", "*.chunks.jsonl") for path in FIXTURES.glob(pattern)
)

CUT_SEEDS = (0, 1, 2, 3)
FEEDS = (
    "whole-bytes",
    *(f"cut-bytes-seed-{seed}" for seed in CUT_SEEDS),
    "single-bytes",
    "cut-text-seed-0",
    "dicts",
    "sdk",
)
RAW_FEEDS = tuple(feed for feed in FEEDS if feed not in ("dicts", "sdk"))


# --- Loading and feeding ---------------------------------------------------------------------


@functools.cache
def raw_body(name: str) -> bytes:
    """Return the fixture as an SSE body; a `.chunks.jsonl` line becomes one `data:` event."""
    data = (FIXTURES / name).read_bytes()
    if name.endswith(".chunks.jsonl"):
        return b"".join(b"data: " + line + b"\n\n" for line in data.splitlines() if line)
    return data


@functools.cache
def chunk_dicts(name: str) -> tuple[dict[str, Any], ...]:
    """Return the JSON payloads of the fixture's `data:` lines, without `[DONE]`."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    if name.endswith(".chunks.jsonl"):
        return tuple(json.loads(line) for line in text.splitlines() if line)
    payloads = [
        line[len("data:") :].strip() for line in text.split("\n") if line.startswith("data:")
    ]
    return tuple(json.loads(payload) for payload in payloads if payload != "[DONE]")


def _responses_event_classes() -> dict[str, type[Any]]:
    union = typing.get_args(ResponseStreamEvent)[0]  # ResponseStreamEvent is Annotated[Union, ...]
    classes: dict[str, type[Any]] = {}
    for member in typing.get_args(union):
        for literal in typing.get_args(member.model_fields["type"].annotation):
            classes[literal] = member
    return classes


def _openai_object(cls: Any, data: dict[str, Any]) -> object:
    """Build an openai SDK object the way the SDK's stream does, without rejecting odd values."""
    try:
        return cls.model_validate(data)
    except pydantic.ValidationError:
        return cls.construct(**data)


@functools.cache
def sdk_objects(name: str) -> tuple[object, ...]:
    """Return the chunks as SDK objects; events the SDK has no type for stay dicts."""
    objects: list[object] = []
    anthropic_events: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(
        anthropic.types.RawMessageStreamEvent
    )
    responses_events = _responses_event_classes()
    for data in chunk_dicts(name):
        if name.startswith("anthropic"):
            try:
                objects.append(anthropic_events.validate_python(data))
            except pydantic.ValidationError:  # ping; the SDK skips it
                objects.append(data)
        elif "responses" in name:
            event_class = responses_events.get(data.get("type", ""))
            objects.append(data if event_class is None else _openai_object(event_class, data))
        elif "error" in data:  # the SDK raises instead of yielding an error event
            objects.append(data)
        elif "completions" in name:
            objects.append(_openai_object(Completion, data))
        else:
            objects.append(_openai_object(ChatCompletionChunk, data))
    return tuple(objects)


def _cut(data: bytes | str, seed: int) -> list[Any]:
    rng = random.Random(seed)
    count = rng.randint(1, max(1, len(data) // 8))
    offsets = sorted(rng.sample(range(1, len(data)), count))
    bounds = [0, *offsets, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


def items_for(name: str, feed: str) -> list[Any]:
    """Return the items a handler would yield for the fixture in the given way."""
    body = raw_body(name)
    if feed == "whole-bytes":
        return [body]
    if feed.startswith("cut-bytes-seed-"):
        return _cut(body, int(feed.rsplit("-", 1)[1]))
    if feed == "single-bytes":
        return [body[i : i + 1] for i in range(len(body))]
    if feed.startswith("cut-text-seed-"):
        return _cut(body.decode("utf-8"), int(feed.rsplit("-", 1)[1]))
    if feed == "dicts":
        return list(chunk_dicts(name))
    if feed == "sdk":
        return list(sdk_objects(name))
    raise ValueError(f"unknown feed {feed!r}")


def record(items: list[Any]) -> StreamResult:
    recorder = StreamRecorder()
    for item in items:
        recorder.add(item)
    return recorder.finish()


@functools.cache
def result_for(name: str, feed: str) -> StreamResult:
    return record(items_for(name, feed))


def parse_text_body(text_body: str) -> list[Any]:
    """Parse a body the way Helicone's OpenAI stream parser does (split lines, strip `data:`)."""
    lines = [line for line in text_body.split("\n") if line and not line.startswith("event:")]
    payloads = [line.replace("data:", "", 1).strip() for line in lines]
    return [json.loads(payload) for payload in payloads if payload != "[DONE]"]


# --- Expected results, from PROVENANCE.md ------------------------------------------------------

ABSENT = object()


def lookup(result: StreamResult, path: str) -> Any:
    """Return the value at a dotted path: a StreamResult field, then dict keys and list indexes."""
    first, *rest = path.split(".")
    value: Any = getattr(result, first)
    for part in rest:
        if isinstance(value, list):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return ABSENT
    return value


def _mistral_parts(result: StreamResult, part_type: str) -> str:
    texts = []
    for part in result.json["choices"][0]["message"]["content"]:
        if part["type"] == part_type == "text":
            texts.append(part["text"])
        elif part["type"] == part_type == "thinking":
            texts.extend(inner["text"] for inner in part["thinking"])
    return "".join(texts)


def mistral_thinking(result: StreamResult) -> str:
    return _mistral_parts(result, "thinking")


def mistral_answer(result: StreamResult) -> str:
    return _mistral_parts(result, "text")


Getter = str | Callable[[StreamResult], Any]
Check = tuple[Getter, str, Any]

MSG = "json.choices.0.message"
CALL0 = f"{MSG}.tool_calls.0"
CALL1 = f"{MSG}.tool_calls.1"
FR = "json.choices.0.finish_reason"

EXPECTED: dict[str, list[Check]] = {
    "openai-chat-stream-content-usage.sse": [
        ("format", "==", "openai-chat"),
        ("model", "==", "gpt-4o-2024-08-06"),
        (
            f"{MSG}.content",
            "==",
            "I'm unable to provide real-time weather updates. To get the current weather in San "
            "Francisco, I recommend checking a reliable weather website or a weather app.",
        ),
        (f"{MSG}.role", "==", "assistant"),
        (FR, "==", "stop"),
        ("json.usage.prompt_tokens", "==", 14),
        ("json.usage.completion_tokens", "==", 30),
        ("json.usage.total_tokens", "==", 44),
        ("json.usage.completion_tokens_details.reasoning_tokens", "==", 0),
        ("usage_present", "==", True),
        ("error", "==", None),
    ],
    "openai-chat-stream-tool-calls-parallel.sse": [
        ("format", "==", "openai-chat"),
        (f"{MSG}.content", "==", None),
        (f"{MSG}.tool_calls", "len", 2),
        (f"{CALL0}.id", "==", "call_JMW1whyEaYG438VE1OIflxA2"),
        (f"{CALL0}.type", "==", "function"),
        (f"{CALL0}.function.name", "==", "GetWeatherArgs"),
        (
            f"{CALL0}.function.arguments",
            "==",
            '{"city": "Edinburgh", "country": "GB", "units": "c"}',
        ),
        (f"{CALL1}.id", "==", "call_DNYTawLBoN8fj3KN6qU9N1Ou"),
        (f"{CALL1}.function.name", "==", "get_stock_price"),
        (f"{CALL1}.function.arguments", "==", '{"ticker": "AAPL", "exchange": "NASDAQ"}'),
        (FR, "==", "tool_calls"),
        ("json.usage.prompt_tokens", "==", 149),
        ("json.usage.completion_tokens", "==", 60),
        ("json.usage.total_tokens", "==", 209),
        ("error", "==", None),
    ],
    "openai-chat-stream-refusal.sse": [
        ("format", "==", "openai-chat"),
        (f"{MSG}.refusal", "==", "I'm sorry, I can't assist with that request."),
        (f"{MSG}.content", "==", None),
        (FR, "==", "stop"),
        ("json.usage.prompt_tokens", "==", 79),
        ("json.usage.completion_tokens", "==", 11),
        ("json.usage.total_tokens", "==", 90),
    ],
    "openai-chat-stream-logprobs.sse": [
        ("format", "==", "openai-chat"),
        (f"{MSG}.content", "==", "Foo!"),
        (
            "json.choices.0.logprobs.content",
            "==",
            [
                {
                    "token": "Foo",
                    "logprob": -0.0025094282,
                    "bytes": [70, 111, 111],
                    "top_logprobs": [],
                },
                {"token": "!", "logprob": -0.26638845, "bytes": [33], "top_logprobs": []},
            ],
        ),
        (FR, "==", "stop"),
        ("json.usage.prompt_tokens", "==", 9),
        ("json.usage.completion_tokens", "==", 2),
        ("json.usage.total_tokens", "==", 11),
    ],
    "openai-chat-stream-finish-length.sse": [
        ("format", "==", "openai-chat"),
        (f"{MSG}.content", "==", '{"'),
        (f"{MSG}.content", "len", 2),
        (FR, "==", "length"),
        ("json.usage.prompt_tokens", "==", 79),
        ("json.usage.completion_tokens", "==", 1),
        ("json.usage.total_tokens", "==", 80),
    ],
    "openai-chat-stream-content.sse": [
        ("format", "==", "openai-chat"),
        ("json.id", "==", "chatcmpl-908MECg5dMyTTbJEltubwQXeeWlBA"),
        ("model", "==", "gpt-3.5-turbo-0125"),
        ("json.model", "==", "gpt-3.5-turbo-0125"),
        (
            f"{MSG}.content",
            "==",
            "Why did the opentelemetry developer go broke? \n"
            "Because they kept trying to trace their steps back too far!",
        ),
        (FR, "==", "stop"),
        ("json.usage", "absent", None),
        ("usage_present", "==", False),
    ],
    "openai-chat-stream-tool-call.sse": [
        ("format", "==", "openai-chat"),
        ("json.id", "==", "chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl"),
        ("model", "==", "gpt-4o-mini-2024-07-18"),
        (f"{MSG}.tool_calls", "len", 1),
        (f"{CALL0}.id", "==", "call_ZR5UUuTt3pf61kjwAJIYdVMj"),
        (f"{CALL0}.function.name", "==", "get_capital"),
        (f"{CALL0}.function.arguments", "==", '{"country":"UK"}'),
        (FR, "==", "tool_calls"),
        ("json.usage.prompt_tokens", "==", 53),
        ("json.usage.completion_tokens", "==", 15),
        ("json.usage.total_tokens", "==", 68),
        ("json.usage.prompt_tokens_details", "all-zero", None),
        ("json.usage.completion_tokens_details", "all-zero", None),
        ("json.obfuscation", "absent", None),
    ],
    "openai-completions-stream.sse": [
        ("format", "==", "openai-completions"),
        ("json.object", "==", "text_completion"),
        ("json.id", "==", "cmpl-8wq44uFYuGm6kNe44ntRwluggKZFY"),
        ("model", "==", "davinci-002"),
        (
            "json.choices.0.text",
            "==",
            " that isn\u2019t about collecting logs\n\nJ) Some of these folks helped bring the",
        ),
        ("json.choices.0.text", "startswith", " "),
        ("json.choices.0.text", "contains", "\u2019"),
        (FR, "==", "length"),
        ("json.usage", "absent", None),
        ("usage_present", "==", False),
    ],
    "openai-responses-stream-function-call.sse": [
        ("format", "==", "openai-responses"),
        ("json.object", "==", "response"),
        ("json.status", "==", "completed"),
        ("json.output", "len", 1),
        ("json.output.0.type", "==", "function_call"),
        ("json.output.0.name", "==", "get_capital"),
        ("json.output.0.call_id", "==", "call_kL0PCQV7M2WMoVX8V8OtYSAL"),
        ("json.output.0.arguments", "==", '{"country":"France"}'),
        ("json.usage.input_tokens", "==", 255),
        ("json.usage.output_tokens", "==", 16),
        ("json.usage.total_tokens", "==", 271),
        ("usage_present", "==", True),
        ("error", "==", None),
    ],
    "openai-responses-stream-text-logprobs.sse": [
        ("format", "==", "openai-responses"),
        ("model", "==", "gpt-4o-mini-2024-07-18"),
        ("json.status", "==", "completed"),
        ("json.output.0.content.0.text", "==", "The capital of Minas Gerais is Belo Horizonte."),
        ("json.output.0.content.0.logprobs", "len", 9),
        ("json.usage.input_tokens", "==", 25),
        ("json.usage.output_tokens", "==", 10),
        ("json.usage.total_tokens", "==", 35),
    ],
    "openai-responses-stream-error.chunks.jsonl": [
        ("format", "==", "openai-responses"),
        ("model", "==", "gpt-5-nano-2025-08-07"),
        ("error.type", "==", "insufficient_quota"),
        ("error.code", "==", "insufficient_quota"),
        (
            "error.message",
            "startswith",
            "You exceeded your current quota, please check your plan and billing details.",
        ),
        ("json.status", "==", "failed"),
        ("json.error.code", "==", "insufficient_quota"),
        ("json.output", "==", []),
        ("json.usage", "==", None),
        ("usage_present", "==", False),
        ("first_content_at", "==", None),
    ],
    "azure-openai-chat-stream.sse": [
        ("format", "==", "openai-chat"),
        ("json.id", "==", "chatcmpl-9HpbaAXyt0cAnlWvI8kUAFpZt5jyQ"),
        ("model", "==", "gpt-35-turbo"),
        ("json.model", "==", "gpt-35-turbo"),
        ("json.created", "==", 1714036974),
        (
            f"{MSG}.content",
            "==",
            "Why did the Opentelemetry developer bring a ladder to the coding competition? \n\n"
            "Because they wanted to reach new traces!",
        ),
        (FR, "==", "stop"),
        ("json.choices", "len", 1),
        ("json.usage", "absent", None),
        ("usage_present", "==", False),
    ],
    "anthropic-messages-stream.sse": [
        ("format", "==", "anthropic"),
        ("json.id", "==", "msg_01MXWxhWoPSgrYhjTuMDM6F1"),
        ("json.type", "==", "message"),
        ("model", "==", "claude-3-haiku-20240307"),
        ("json.content", "len", 1),
        ("json.content.0.type", "==", "text"),
        (
            "json.content.0.text",
            "startswith",
            "Here's an OpenTelemetry-themed joke for you:\n\nWhy did the dev",
        ),
        (
            "json.content.0.text",
            "endswith",
            "Let me know if you'd like to hear any other tech-themed jokes!",
        ),
        ("json.stop_reason", "==", "end_turn"),
        ("json.usage.input_tokens", "==", 17),
        ("json.usage.output_tokens", "==", 171),
        ("usage_present", "==", True),
        ("error", "==", None),
    ],
    "anthropic-messages-stream-tool-use.sse": [
        ("format", "==", "anthropic"),
        ("model", "==", "claude-3-5-sonnet-20240620"),
        ("json.content", "len", 3),
        (
            "json.content.0.text",
            "==",
            "Certainly! I can help you with that information. To get the weather and current time "
            "in San Francisco, I'll need to use two separate functions. Let me fetch that data for "
            "you.",
        ),
        ("json.content.1.type", "==", "tool_use"),
        ("json.content.1.name", "==", "get_weather"),
        ("json.content.1.id", "==", "toolu_014x5X91kx3fvdhpLvwXZWE2"),
        ("json.content.1.input", "==", {"location": "San Francisco, CA", "unit": "celsius"}),
        ("json.content.2.type", "==", "tool_use"),
        ("json.content.2.name", "==", "get_time"),
        ("json.content.2.id", "==", "toolu_0121kXsENLvoDZ72LCuAnCCz"),
        ("json.content.2.input", "==", {"timezone": "America/Los_Angeles"}),
        ("json.stop_reason", "==", "tool_use"),
        ("json.usage.input_tokens", "==", 506),
        ("json.usage.cache_creation_input_tokens", "==", 0),
        ("json.usage.cache_read_input_tokens", "==", 0),
        ("json.usage.service_tier", "==", "standard"),
        ("json.usage.output_tokens", "==", 153),
    ],
    "groq-chat-stream.sse": [
        ("format", "==", "openai-chat"),
        ("json.id", "==", "chatcmpl-532a6640-2e18-4a4c-8406-8437a857ce48"),
        ("model", "==", "llama3-8b-8192"),
        (
            f"{MSG}.content",
            "startswith",
            "A joke about OpenTelemetry!\n\nWhy did the OpenTelemetry Span go t",
        ),
        (f"{MSG}.content", "endswith", 'I hope it "exposes" a smile on your face!)'),
        (FR, "==", "stop"),
        ("json.usage.prompt_tokens", "==", 18),
        ("json.usage.completion_tokens", "==", 73),
        ("json.usage.total_tokens", "==", 91),
        ("json.usage.queue_time", "present", None),
        ("json.usage.prompt_time", "present", None),
        ("json.usage.completion_time", "present", None),
        ("json.usage.total_time", "present", None),
        ("json.x_groq.usage.total_tokens", "==", 91),
        ("usage_present", "==", True),
    ],
    "groq-chat-stream-error-event.sse": [
        ("format", "==", "openai-chat"),
        ("model", "==", "openai/gpt-oss-120b"),
        ("json.x_groq.id", "present", None),
        ("json.x_groq.seed", "present", None),
        (
            f"{MSG}.reasoning",
            "startswith",
            "We need to call the tool with invalid parameters first, then",
        ),
        (f"{MSG}.reasoning", "endswith", "Let's do that."),
        (f"{MSG}.content", "==", ""),
        (FR, "==", None),
        ("usage_present", "==", False),
        ("error.message", "startswith", "Tool call validation failed: "),
        ("error.type", "==", "invalid_request_error"),
        ("error.code", "==", "tool_use_failed"),
        ("error.failed_generation", "startswith", '{"name": "get_something_by_name", '),
        ("error.status_code", "==", 400),
    ],
    "openrouter-chat-stream-reasoning.sse": [
        ("format", "==", "openai-chat"),
        ("json.id", "==", "gen-1765226419-AGrwjunAftQIAgweibL8"),
        ("model", "==", "anthropic/claude-sonnet-4.5"),
        ("json.provider", "==", "Google"),
        (f"{MSG}.content", "==", "2 + 2 = 4"),
        (f"{MSG}.reasoning", "==", "This is a simple arithmetic question. 2+2 equals 4."),
        (f"{MSG}.reasoning_details", "len", 1),
        (
            f"{MSG}.reasoning_details.0.text",
            "==",
            "This is a simple arithmetic question. 2+2 equals 4.",
        ),
        (f"{MSG}.reasoning_details.0.signature", "startswith", "Et0BCkgI"),
        (FR, "==", "stop"),
        ("json.choices.0.native_finish_reason", "==", "stop"),
        ("json.usage.prompt_tokens", "==", 43),
        ("json.usage.completion_tokens", "==", 36),
        ("json.usage.total_tokens", "==", 79),
        ("json.usage.completion_tokens_details.reasoning_tokens", "==", 13),
        ("json.usage.cost", "==", 0.000669),
        ("json.usage.is_byok", "==", False),
    ],
    "deepseek-chat-stream-reasoning.sse": [
        ("format", "==", "openai-chat"),
        ("json.id", "==", "33be18fc-3842-486c-8c29-dd8e578f7f20"),
        ("model", "==", "deepseek-reasoner"),
        (f"{MSG}.content", "==", "Hello there! \U0001f60a How can I help you today?"),
        (
            f"{MSG}.reasoning_content",
            "startswith",
            'Hmm, the user just said "Hello". It\'s a simple greeting but',
        ),
        (FR, "==", "stop"),
        ("json.usage.prompt_tokens", "==", 6),
        ("json.usage.completion_tokens", "==", 212),
        ("json.usage.total_tokens", "==", 218),
        ("json.usage.completion_tokens_details.reasoning_tokens", "==", 198),
        ("json.usage.prompt_cache_hit_tokens", "==", 0),
        ("json.usage.prompt_cache_miss_tokens", "==", 6),
    ],
    "mistral-chat-stream-thinking.sse": [
        ("format", "==", "openai-chat"),
        ("json.id", "==", "9f9d90210f194076abeee223863eaaf0"),
        ("model", "==", "magistral-medium-latest"),
        (
            mistral_thinking,
            "startswith",
            "Okay, the user is asking how to cross the street. I know that",
        ),
        (mistral_thinking, "len", 421),
        (
            mistral_answer,
            "startswith",
            "To cross the street safely, follow these steps:\n\n1. Look both",
        ),
        (mistral_answer, "len", 607),
        (FR, "==", "stop"),
        ("json.usage.prompt_tokens", "==", 10),
        ("json.usage.completion_tokens", "==", 232),
        ("json.usage.total_tokens", "==", 242),
    ],
}

# Chunk counts as PROVENANCE.md states them, and whether the body ends with `data: [DONE]`.
CHUNK_COUNTS: dict[str, tuple[int, bool]] = {
    "openai-chat-stream-content-usage.sse": (33, True),
    "openai-chat-stream-tool-calls-parallel.sse": (25, True),
    "openai-chat-stream-refusal.sse": (13, True),
    "openai-chat-stream-logprobs.sse": (5, True),
    "openai-chat-stream-finish-length.sse": (4, True),
    "openai-chat-stream-content.sse": (25, True),
    "openai-chat-stream-tool-call.sse": (8, True),
    "openai-completions-stream.sse": (16, True),
    "openai-responses-stream-function-call.sse": (11, False),
    "openai-responses-stream-text-logprobs.sse": (17, False),
    "openai-responses-stream-error.chunks.jsonl": (4, False),
    "azure-openai-chat-stream.sse": (27, True),
    "anthropic-messages-stream.sse": (76, False),
    "anthropic-messages-stream-tool-use.sse": (35, False),
    "groq-chat-stream.sse": (74, True),
    "groq-chat-stream-error-event.sse": (95, False),  # 94 chunks and the error event
    "openrouter-chat-stream-reasoning.sse": (14, True),
    "deepseek-chat-stream-reasoning.sse": (211, True),
    "mistral-chat-stream-thinking.sse": (158, True),
}


def _check_id(check: Check) -> str:
    getter, op, _ = check
    name = getter if isinstance(getter, str) else getter.__name__
    return f"{name}:{op}"


CASES = [
    pytest.param(name, feed, check, id=f"{name}-{feed}-{_check_id(check)}-{position}")
    for name, checks in EXPECTED.items()
    for feed in FEEDS
    for position, check in enumerate(checks)
]


def _actual(result: StreamResult, getter: Getter) -> Any:
    return lookup(result, getter) if isinstance(getter, str) else getter(result)


class TestProvenance:
    def test_every_stream_fixture_has_expectations(self) -> None:
        """Every stream fixture in the folder has a row of expected results here."""
        assert sorted(EXPECTED) == STREAM_FIXTURES

    def test_every_stream_fixture_has_a_count(self) -> None:
        """Every stream fixture has its stated chunk count here."""
        assert sorted(CHUNK_COUNTS) == STREAM_FIXTURES

    @pytest.mark.parametrize(("name", "feed", "check"), CASES)
    def test_result(self, name: str, feed: str, check: Check) -> None:
        """Reassembly gives the value PROVENANCE.md states, whichever way the stream is fed."""
        getter, op, expected = check
        actual = _actual(result_for(name, feed), getter)
        if op == "==":
            assert actual == expected
        elif op == "startswith":
            assert actual.startswith(expected), actual[: len(expected) + 20]
        elif op == "endswith":
            assert actual.endswith(expected), actual[-len(expected) - 20 :]
        elif op == "contains":
            assert expected in actual
        elif op == "len":
            assert len(actual) == expected
        elif op == "absent":
            assert actual is ABSENT
        elif op == "present":
            assert actual is not ABSENT
        elif op == "all-zero":
            assert set(actual.values()) == {0}, actual
        else:
            pytest.fail(f"unknown check operator {op!r}")


class TestChunkCounts:
    @pytest.mark.parametrize("name", STREAM_FIXTURES)
    def test_fixture_count(self, name: str) -> None:
        """The fixture contains as many chunks as PROVENANCE.md states."""
        assert len(chunk_dicts(name)) == CHUNK_COUNTS[name][0]

    @pytest.mark.parametrize("name", STREAM_FIXTURES)
    def test_done_marker(self, name: str) -> None:
        """The raw body ends with `data: [DONE]` exactly when PROVENANCE.md states it does."""
        assert raw_body(name).endswith(b"data: [DONE]\n\n") is CHUNK_COUNTS[name][1]

    @pytest.mark.parametrize("name", STREAM_FIXTURES)
    @pytest.mark.parametrize("feed", FEEDS)
    def test_item_count(self, name: str, feed: str) -> None:
        """item_count is the number of items recorded."""
        assert result_for(name, feed).item_count == len(items_for(name, feed))


class TestTextBody:
    @pytest.mark.parametrize("name", STREAM_FIXTURES)
    @pytest.mark.parametrize("feed", RAW_FEEDS)
    def test_raw_kept(self, name: str, feed: str) -> None:
        """A raw SSE body is kept as it came, decoded as UTF-8."""
        assert result_for(name, feed).text_body == raw_body(name).decode("utf-8")

    @pytest.mark.parametrize("name", STREAM_FIXTURES)
    @pytest.mark.parametrize("feed", ["dicts", "sdk"])
    def test_chunks_serialized(self, name: str, feed: str) -> None:
        """A body built from chunks parses, line by line, back into the same chunks."""
        assert parse_text_body(result_for(name, feed).text_body) == list(chunk_dicts(name))


class TestFirstContent:
    @pytest.mark.parametrize("name", STREAM_FIXTURES)
    @pytest.mark.parametrize("feed", FEEDS)
    def test_same_across_feeds(self, name: str, feed: str) -> None:
        """Whether a first content time exists does not depend on how the stream is fed."""
        has_content = result_for(name, feed).first_content_at is not None
        assert has_content is (name != "openai-responses-stream-error.chunks.jsonl")


def _cuts_inside(body: bytes, character: str) -> list[list[bytes]]:
    encoded = character.encode("utf-8")
    offset = body.index(encoded)
    return [[body[: offset + k], body[offset + k :]] for k in range(1, len(encoded))]


class TestMultibyteCuts:
    @pytest.mark.parametrize("split", [0, 1])
    def test_curly_apostrophe(self, split: int) -> None:
        """A cut inside U+2019 leaves the completion text intact."""
        items = _cuts_inside(raw_body("openai-completions-stream.sse"), "\u2019")[split]
        text = record(items).json["choices"][0]["text"]
        assert (
            text
            == " that isn\u2019t about collecting logs\n\nJ) Some of these folks helped bring the"
        )

    @pytest.mark.parametrize("split", [0, 1, 2])
    def test_emoji(self, split: int) -> None:
        """A cut inside a 4-byte emoji leaves the content intact."""
        items = _cuts_inside(raw_body("deepseek-chat-stream-reasoning.sse"), "\U0001f60a")[split]
        content = record(items).json["choices"][0]["message"]["content"]
        assert content == "Hello there! \U0001f60a How can I help you today?"

    @pytest.mark.parametrize("split", [0, 1, 2])
    def test_emoji_body(self, split: int) -> None:
        """A cut inside a 4-byte emoji leaves the raw body intact."""
        body = raw_body("deepseek-chat-stream-reasoning.sse")
        items = _cuts_inside(body, "\U0001f60a")[split]
        assert record(items).text_body == body.decode("utf-8")
