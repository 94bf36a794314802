"""Record what a streaming handler yields, then reassemble it into what Helicone logs.

Recording is split from parsing so that the handler's loop pays only for two list appends per
item. All parsing happens in `StreamRecorder.finish`, once the stream has ended.

The kind of the first non-empty item decides how the stream is read:

- `bytes` or `str`: raw text. It is an SSE body when it starts with an SSE line (`data:`,
  `event:`, `id:`, `retry:` or a `:` comment), otherwise plain text fragments.
- anything else: one chunk per item. Dicts are used as they are, SDK models are converted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from . import _anthropic, _openai_chat, _openai_completions, _openai_responses
from ._chunk import Chunk, Reassembly, as_dict, error_payload, nonempty_str
from ._detect import (
    ANTHROPIC,
    OPENAI_CHAT,
    OPENAI_COMPLETIONS,
    OPENAI_RESPONSES,
    SSE_DECISION_LENGTH,
    TEXT,
    UNKNOWN,
    detect_format,
    starts_like_sse,
)
from ._normalize import to_payload
from ._sse import SSEParser, decode_pieces
from ._text import reassemble_text

_RAW_TYPES = (bytes, bytearray, memoryview, str)

_REASSEMBLERS: dict[str, Callable[[Sequence[Chunk]], Reassembly]] = {
    OPENAI_CHAT: _openai_chat.reassemble,
    OPENAI_COMPLETIONS: _openai_completions.reassemble,
    OPENAI_RESPONSES: _openai_responses.reassemble,
    ANTHROPIC: _anthropic.reassemble,
}
# Formats whose SSE events are named. A body synthesized from their chunks gets `event:` lines,
# as the provider sends them.
_NAMED_EVENT_FORMATS = frozenset({ANTHROPIC, OPENAI_RESPONSES})


@dataclass(frozen=True)
class StreamResult:
    """A reassembled stream.

    `json` is a new dict, but nested values may be shared with the recorded items, so treat it
    as read-only.
    """

    # The stream as SSE text: the raw body, or one `data: {json}` line per chunk.
    text_body: str
    # The body the provider would have sent without streaming.
    json: dict[str, Any]
    # The error object of the first error event or chunk.
    error: dict[str, Any] | None
    # "openai-chat", "openai-completions", "openai-responses", "anthropic", "text" or "unknown".
    format: str
    # perf_counter() time of the first item that carried content: text, a refusal, reasoning or
    # thinking, or a tool-call name or arguments.
    first_content_at: float | None
    # The first non-empty model the stream reported.
    model: str | None
    # True if the stream reported token usage anywhere.
    usage_present: bool
    # Number of `add` calls.
    item_count: int


class StreamRecorder:
    """Collects the items a streaming handler yields and reassembles them at the end."""

    __slots__ = ("_items", "_times")

    def __init__(self) -> None:
        self._items: list[object] = []
        self._times: list[float] = []

    def add(self, item: object) -> None:
        """Record one yielded item and the `time.perf_counter()` at which it was yielded.

        This runs inside the handler's loop, so it only appends and never inspects the item.
        """
        self._items.append(item)
        self._times.append(perf_counter())

    def finish(self) -> StreamResult:
        """Parse and reassemble everything recorded.

        Bad input (malformed JSON, unknown shapes, objects that are not chunks) does not raise,
        which the fuzz tests in tests/test_stream_recorder.py check. The result contains what
        could be reassembled, and `format` is "unknown" if nothing could.
        Items of a different kind than the first non-empty one are skipped. Call it once, after
        the stream has ended.
        """
        first = _first_nonempty(self._items)
        if first is None:
            return self._result("", UNKNOWN, Reassembly(json={}))
        if isinstance(first, _RAW_TYPES):
            return self._finish_raw()
        return self._finish_chunks()

    def _finish_raw(self) -> StreamResult:
        indices: list[int] = []
        pieces: list[bytes | str] = []
        for index, item in enumerate(self._items):
            if isinstance(item, str):
                pieces.append(item)
            elif isinstance(item, (bytes, bytearray, memoryview)):
                pieces.append(bytes(item))
            else:
                continue
            indices.append(index)
        texts = decode_pieces(pieces)

        if not starts_like_sse(_leading_text(texts)):
            text_body, reassembly = reassemble_text(list(zip(texts, indices, strict=True)))
            return self._result(text_body, TEXT, reassembly)

        parser = SSEParser()
        chunks: list[Chunk] = []
        for text, index in zip(texts, indices, strict=True):
            chunks.extend(_parse_events(parser.feed(text, index)))
        chunks.extend(_parse_events(parser.close(indices[-1])))
        stream_format = detect_format(chunks)
        return self._result("".join(texts), stream_format, _reassemble(stream_format, chunks))

    def _finish_chunks(self) -> StreamResult:
        chunks: list[Chunk] = []
        for index, item in enumerate(self._items):
            if item is None or isinstance(item, _RAW_TYPES):
                continue
            payload = to_payload(item)
            if payload is not None:
                chunks.append(Chunk(payload, None, index))
        stream_format = detect_format(chunks)
        text_body = _serialize(chunks, named_events=stream_format in _NAMED_EVENT_FORMATS)
        return self._result(text_body, stream_format, _reassemble(stream_format, chunks))

    def _result(self, text_body: str, stream_format: str, reassembly: Reassembly) -> StreamResult:
        index = reassembly.first_content_index
        return StreamResult(
            text_body=text_body,
            json=reassembly.json,
            error=reassembly.error,
            format=stream_format,
            first_content_at=self._times[index] if index is not None else None,
            model=reassembly.model,
            usage_present=reassembly.usage_present,
            item_count=len(self._items),
        )


def _first_nonempty(items: Sequence[object]) -> object:
    for item in items:
        if item is None:
            continue
        if isinstance(item, _RAW_TYPES) and len(item) == 0:
            continue
        return item
    return None


def _leading_text(texts: Sequence[str]) -> str:
    """Return enough of the start of the text to tell SSE from plain text."""
    leading = ""
    for text in texts:
        leading += text
        if len(leading.lstrip("\ufeff\r\n")) >= SSE_DECISION_LENGTH:
            break
    return leading


def _parse_events(events: Sequence[Any]) -> list[Chunk]:
    """Return the events whose data is a JSON object; `[DONE]` and malformed data are skipped."""
    chunks: list[Chunk] = []
    for event in events:
        try:
            data = json.loads(event.data)
        except (ValueError, RecursionError):
            continue
        if isinstance(data, dict):
            chunks.append(Chunk(data, event.event, event.piece_index))
    return chunks


def _serialize(chunks: Sequence[Chunk], *, named_events: bool) -> str:
    """Return chunks as an SSE body, one `data:` line per chunk, each followed by a blank line."""
    parts: list[str] = []
    for chunk in chunks:
        try:
            line = json.dumps(chunk.data, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            # NOTE: a chunk dict holding a value JSON cannot encode is left out of the body; its
            # content still reaches `json` through reassembly.
            continue
        event = nonempty_str(chunk.data.get("type")) if named_events else None
        if event is not None and "\n" not in event and "\r" not in event:
            parts.append(f"event: {event}\n")
        parts.append(f"data: {line}\n\n")
    return "".join(parts)


def _reassemble(stream_format: str, chunks: Sequence[Chunk]) -> Reassembly:
    reassemble = _REASSEMBLERS.get(stream_format)
    if reassemble is not None:
        return reassemble(chunks)
    return _reassemble_unknown(chunks)


def _reassemble_unknown(chunks: Sequence[Chunk]) -> Reassembly:
    """Keep what any format would report: the first error, the first model, whether usage came."""
    result = Reassembly(json={})
    for chunk in chunks:
        if result.error is None:
            result.error = error_payload(chunk)
        if result.model is None:
            result.model = nonempty_str(chunk.data.get("model"))
        if as_dict(chunk.data.get("usage")) is not None:
            result.usage_present = True
    return result
