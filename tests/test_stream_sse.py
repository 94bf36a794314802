"""Tests for the incremental SSE parser and the UTF-8 piece decoder."""

from __future__ import annotations

from heliconetrace._stream._sse import SSEEvent, SSEParser, decode_pieces


def parse(*pieces: str) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for index, piece in enumerate(pieces):
        events.extend(parser.feed(piece, index))
    events.extend(parser.close(len(pieces) - 1))
    return events


class TestDecodePieces:
    def test_split_character(self) -> None:
        """A character split across byte pieces comes out with the piece that completes it."""
        encoded = "a\u2019b".encode()
        assert decode_pieces([encoded[:2], encoded[2:3], encoded[3:]]) == ["a", "", "\u2019b"]

    def test_one_text_per_piece(self) -> None:
        """The result has one str per piece, so piece indexes stay valid."""
        assert len(decode_pieces([b"\xf0", b"\x9f", b"\x98", b"\x8a"])) == 4

    def test_emoji_bytewise(self) -> None:
        """A 4-byte character fed one byte at a time decodes to that character."""
        assert "".join(decode_pieces([b"\xf0", b"\x9f", b"\x98", b"\x8a"])) == "\U0001f60a"

    def test_invalid_bytes(self) -> None:
        """Invalid UTF-8 becomes U+FFFD instead of raising."""
        assert decode_pieces([b"a\xffb"]) == ["a\ufffdb"]

    def test_truncated_character(self) -> None:
        """A character still incomplete at the end becomes U+FFFD in the last piece."""
        assert decode_pieces([b"a", b"\xe2\x80"]) == ["a", "\ufffd"]

    def test_str_passthrough(self) -> None:
        """Str pieces are returned unchanged."""
        assert decode_pieces(["data: x", "\n\n"]) == ["data: x", "\n\n"]

    def test_empty(self) -> None:
        """No pieces give no texts."""
        assert decode_pieces([]) == []


class TestSSEParser:
    def test_event(self) -> None:
        """An event's name and data are parsed, with one space after the colon removed."""
        assert parse("event: ping\ndata: {}\n\n") == [SSEEvent("{}", "ping", 0)]

    def test_no_space(self) -> None:
        """A value directly after the colon is kept whole."""
        assert parse("data:{}\n\n")[0].data == "{}"

    def test_only_one_space_removed(self) -> None:
        """Only the first space after the colon is removed."""
        assert parse("data:  x\n\n")[0].data == " x"

    def test_unnamed_event(self) -> None:
        """An event without an `event:` line has no name."""
        assert parse("data: x\n\n")[0].event is None

    def test_multiline_data(self) -> None:
        """Several `data:` lines of one event are joined with newlines."""
        assert parse("data: a\ndata: b\n\n")[0].data == "a\nb"

    def test_comments(self) -> None:
        """Comment lines are skipped."""
        assert parse(": keep-alive\n\ndata: x\n\n") == [SSEEvent("x", None, 0)]

    def test_crlf(self) -> None:
        """CRLF line breaks end lines and events."""
        assert parse("data: a\r\n\r\ndata: b\r\n\r\n") == [
            SSEEvent("a", None, 0),
            SSEEvent("b", None, 0),
        ]

    def test_cr(self) -> None:
        """A bare CR ends a line."""
        assert [event.data for event in parse("data: a\r\rdata: b\r\r")] == ["a", "b"]

    def test_crlf_split(self) -> None:
        """A CRLF split between two pieces counts as one line break."""
        assert [event.data for event in parse("data: a\r", "\n\r", "\ndata: b\r\n\r\n")] == [
            "a",
            "b",
        ]

    def test_line_split(self) -> None:
        """A line split across pieces is parsed whole."""
        assert parse("da", 'ta: {"a"', ":1}\n", "\n")[0].data == '{"a":1}'

    def test_piece_index(self) -> None:
        """An event records the piece in which its terminating blank line arrived."""
        assert [event.piece_index for event in parse("data: a\n", "\n", "data: b\n\n")] == [1, 2]

    def test_name_reset(self) -> None:
        """An event name does not carry over to the next event."""
        assert parse("event: a\ndata: 1\n\ndata: 2\n\n")[1].event is None

    def test_event_without_data(self) -> None:
        """An event with no data lines is not dispatched."""
        assert parse("event: a\n\ndata: 1\n\n") == [SSEEvent("1", None, 0)]

    def test_byte_order_mark(self) -> None:
        """A byte-order mark at the start is skipped."""
        assert parse("\ufeffdata: x\n\n")[0].data == "x"

    def test_unterminated_event(self) -> None:
        """An event cut off before its blank line is dispatched at close."""
        assert parse("data: a\n\ndata: b") == [SSEEvent("a", None, 0), SSEEvent("b", None, 0)]

    def test_unknown_fields(self) -> None:
        """The id and retry fields and unknown fields do not change the data."""
        assert parse("id: 7\nretry: 10\nfoo: bar\ndata: x\n\n") == [SSEEvent("x", None, 0)]

    def test_empty_pieces(self) -> None:
        """Empty pieces are ignored."""
        assert parse("", "data: x\n\n", "") == [SSEEvent("x", None, 1)]
