"""Incremental parser for `text/event-stream` bodies, as the WHATWG HTML standard defines them.

The body may arrive in pieces cut anywhere: inside a line, between the `\\r` and `\\n` of a line
break, or inside a multi-byte UTF-8 character. `decode_pieces` turns byte pieces into text
without breaking characters, and `SSEParser` turns text pieces into events, remembering for each
event the piece in which it was completed.

One deliberate difference from the standard: at the end of the body, `SSEParser.close` dispatches
an event that has data but no terminating blank line, where a browser would drop it. A logged
stream that was cut off should still show its last event.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event."""

    data: str  # the event's `data:` values joined with "\n"
    event: str | None  # the `event:` field, None when the event had none
    piece_index: int  # index of the fed piece in which the event was completed


def decode_pieces(pieces: Sequence[bytes | str]) -> list[str]:
    """Decode byte pieces as UTF-8 into one str per piece; str pieces pass through unchanged.

    A character split across pieces is returned with the piece that completes it. Invalid bytes,
    and a character still incomplete at the end, become U+FFFD.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    texts: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            # Bytes held back for an unfinished character cannot continue in a str piece.
            texts.append(decoder.decode(b"", final=True) + piece)
            decoder.reset()
        else:
            texts.append(decoder.decode(piece))
    tail = decoder.decode(b"", final=True)
    if tail:
        if texts:
            texts[-1] += tail
        else:
            texts.append(tail)
    return texts


class SSEParser:
    """Split text pieces into lines and lines into events.

    Comment lines (starting with `:`) are skipped. The `id` and `retry` fields, and unknown
    fields, are parsed but not kept because reassembly does not use them.
    """

    def __init__(self) -> None:
        self._partial_line: list[str] = []
        self._after_cr = False  # the last piece ended in "\r", so a leading "\n" is part of it
        self._at_start = True  # no text seen yet, so one leading byte-order mark is dropped
        self._data: list[str] = []
        self._event: str | None = None
        self._dispatched: list[SSEEvent] = []

    def feed(self, text: str, piece_index: int) -> list[SSEEvent]:
        """Parse one piece of the body and return the events it completed."""
        if not text:
            return []
        if self._at_start:
            self._at_start = False
            text = text.removeprefix(_BOM)
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")

        start = 0
        for match in _LINE_BREAK.finditer(text):
            line = text[start : match.start()]
            if self._partial_line:
                self._partial_line.append(line)
                line = "".join(self._partial_line)
                self._partial_line.clear()
            self._process_line(line, piece_index)
            start = match.end()
        if start < len(text):
            self._partial_line.append(text[start:])
        return self._take_dispatched()

    def close(self, piece_index: int) -> list[SSEEvent]:
        """End the body and return the last event if it lacked its terminating blank line."""
        if self._partial_line:
            line = "".join(self._partial_line)
            self._partial_line.clear()
            self._process_line(line, piece_index)
        self._dispatch(piece_index)
        return self._take_dispatched()

    def _process_line(self, line: str, piece_index: int) -> None:
        if not line:
            self._dispatch(piece_index)
            return
        if line.startswith(":"):
            return
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value

    def _dispatch(self, piece_index: int) -> None:
        if self._data:
            self._dispatched.append(SSEEvent("\n".join(self._data), self._event, piece_index))
        self._data = []
        self._event = None

    def _take_dispatched(self) -> list[SSEEvent]:
        events = self._dispatched
        self._dispatched = []
        return events
