"""A span: one handled LLM request, from start to end, and the record it becomes.

A span collects the request, the response (or the streamed items, or the error) and the
metadata while the handler runs. `end()` serializes request and response at once, so a caller
that changes a returned dict afterwards does not change what is logged, and hands the ended
span to the exporter, whose thread assembles the record.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from heliconetrace._capture import error_body, exception_status, snapshot_json, to_json_object
from heliconetrace._config import SETTINGS
from heliconetrace._diagnostics import internal_error
from heliconetrace._errors import MetadataError
from heliconetrace._lifecycle import get_exporter
from heliconetrace._metadata import Metadata, check_property
from heliconetrace._portkey import portkey_metadata
from heliconetrace._redact import safe_headers
from heliconetrace._sdk import unwrap_raw_response
from heliconetrace._stream import StreamRecorder

# End reasons other than a return or an exception, sent as the property End-Reason.
END_CANCELLED: Final = "cancelled"
END_CLOSED: Final = "closed"
END_ABANDONED: Final = "abandoned"

_UUID4_VERSION_BITS: Final = 0x4 << 76
_UUID_VARIANT_BITS: Final = 0x2 << 62
_UUID4_CLEAR_MASK: Final = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)


def new_request_id() -> str:
    """Return a random version-4 UUID string.

    It uses the `random` module, which is several times faster than `uuid.uuid4()` and reseeds
    itself in a forked child. Request ids need to be unique, not unguessable.
    """
    number = random.getrandbits(128) & _UUID4_CLEAR_MASK | _UUID4_VERSION_BITS | _UUID_VARIANT_BITS
    text = f"{number:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_REQUEST_ID_LOCK: Final = threading.Lock()


def _preview(value: object) -> str:
    """Return a short repr of a value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_request_id(value: object) -> str:
    """Return `value` as a canonical UUID string; Helicone replaces ids that are not UUIDs."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise MetadataError(
            f"Invalid request_id={value!r}: Helicone accepts only UUIDs, for example "
            f"{str(uuid.uuid4())!r}. Leave it out to get a new one."
        ) from None


class Span:
    """One handled request. Create spans with `@helicone_logged` or `helicone_span()`."""

    # Defaults live on the class, so creating a span sets only what differs per call: this
    # runs on the caller's thread for every handled request. None of them is mutable.
    _request: object = None
    _request_by_user = False
    _request_url: str | None = None
    _response: object = None
    _response_by_user = False
    _response_text: str | None = None
    _response_status = 200
    _response_headers: Mapping[str, str] = MappingProxyType({})
    _error: BaseException | None = None
    _end_reason: str | None = None
    _extra_properties: dict[str, str] | None = None
    _stream: StreamRecorder | None = None
    _ended = False
    # The thread and task that run the span's own code (see `_context.execution_unit`).
    owner: tuple[int, object] | None = None
    # Set when the span ends.
    _duration = 0.0
    _request_json: bytes | None = None
    _response_json: bytes | None = None
    _error_status: int | None = None
    _error_body: dict[str, Any] | None = None

    def __init__(
        self,
        metadata: Metadata,
        *,
        request_id: str | None = None,
        parent: Span | None = None,
    ) -> None:
        self._request_id = request_id
        self.parent = parent
        self._metadata = metadata
        self._start_time = time.time()
        self._start_perf = time.perf_counter()

    @property
    def request_id(self) -> str:
        """The UUID sent as `Helicone-Request-Id`; made on first use, then fixed."""
        request_id = self._request_id
        if request_id is None:
            # Made lazily because most spans never show their id before an exporter thread
            # reads it. The lock keeps the caller and that thread from making two different ids.
            with _REQUEST_ID_LOCK:
                if self._request_id is None:
                    self._request_id = new_request_id()
                request_id = self._request_id
        return request_id

    def __repr__(self) -> str:
        return f"<Span {self.name or 'unnamed'} request_id={self.request_id}>"

    @property
    def name(self) -> str | None:
        return self._metadata.name

    @property
    def metadata(self) -> Metadata:
        """The span's metadata: what was bound around it, overridden by its own options."""
        return self._metadata

    @property
    def ended(self) -> bool:
        return self._ended

    def set_request(
        self,
        json: object,
        *,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Set the provider request body to log, replacing what the decorator captured.

        `json` is a mapping, a pydantic model or an SDK object. `headers` are the request headers:
        they are not logged, but Portkey's `x-portkey-virtual-key`, `-provider`, `-trace-id` and
        `-metadata` become properties (see `heliconetrace._portkey`).
        """
        self._check_open("set_request")
        if to_json_object(json) is None:
            raise TypeError(
                f"set_request() needs a mapping or pydantic model as json, not "
                f"{type(json).__name__} ({_preview(json)}). Pass the request body, for example "
                "{'model': ..., 'messages': [...]}."
            )
        if url is not None and not isinstance(url, str):
            raise TypeError(f"set_request(url={url!r}) needs a string URL.")
        self._request = json
        self._request_by_user = True
        self._request_url = url
        if headers is not None:
            # The span's own metadata wins over what the headers describe.
            self._metadata = portkey_metadata(headers, url).merged(self._metadata)

    def set_response(
        self,
        json: object = None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        text: str | None = None,
    ) -> None:
        """Set the provider response to log, replacing what the decorator captured.

        Give `json` (a mapping, pydantic model or SDK object), or `text` for a body that is not
        JSON, such as a raw event stream. Credential headers are dropped before logging.
        """
        self._check_open("set_response")
        if json is not None and to_json_object(json) is None:
            raise TypeError(
                f"set_response() needs a mapping or pydantic model as json, not "
                f"{type(json).__name__} ({_preview(json)}). Pass a body that is not a JSON "
                "object as text, for example set_response(text=...)."
            )
        if text is not None and not isinstance(text, str):
            raise TypeError(f"set_response(text=...) needs a str, not {type(text).__name__}.")
        if not isinstance(status, int) or isinstance(status, bool):
            raise TypeError(f"set_response(status={status!r}) needs an int HTTP status.")
        self._response = json
        self._response_text = text
        self._response_status = status
        self._response_by_user = True
        if headers is not None:
            self._response_headers = safe_headers(headers)

    def set_property(self, name: str, value: str | int | float | bool) -> None:
        """Add a custom property (`Helicone-Property-<name>`) to this span's record."""
        self._check_open("set_property")
        key, text = check_property(name, value)
        if self._extra_properties is None:
            self._extra_properties = {}
        self._extra_properties[key] = text

    def update_metadata(self, metadata: Metadata) -> None:
        """Apply metadata bound while the span is open (see `bind()`); ignored once it ended."""
        if not self._ended:
            self._metadata = self._metadata.merged(metadata)

    def _check_open(self, method: str) -> None:
        if self._ended:
            raise RuntimeError(
                f"Span.{method}() was called after the span ended, so it cannot change the "
                "record any more. Call it inside the handler or the helicone_span() block."
            )

    # The methods below are the decorator's. They never raise into the caller's code.

    def capture_request(self, value: object) -> None:
        if not self._request_by_user and value is not None:
            self._request = value

    def capture_response(self, value: object) -> None:
        # A plain dict, the most common return value, is never a raw SDK response.
        raw = unwrap_raw_response(value) if type(value) is not dict else None
        if raw is not None:
            # An SDK raw response: log its body, and keep its headers, status and request URL.
            value = raw.body
            self._metadata = raw.metadata.merged(self._metadata)
            if self._request_url is None:
                self._request_url = raw.url
            if not self._response_by_user:
                self._response_status = raw.status
                self._response_headers = raw.headers
        if not self._response_by_user:
            self._response = value

    def capture_response_headers(self, headers: Mapping[str, str]) -> None:
        if not self._response_by_user:
            self._response_headers = headers

    def capture_request_url(self, url: str) -> None:
        if not self._request_by_user:
            self._request_url = url

    def stream_recorder(self) -> StreamRecorder:
        recorder = self._stream
        if recorder is None:
            recorder = self._stream = StreamRecorder()
        return recorder

    def fail(self, error: BaseException) -> None:
        self._error = error

    def cancel(self, reason: str, error: BaseException | None = None) -> None:
        self._end_reason = reason
        self._error = error

    def end(self) -> None:
        """Freeze the span and hand it to the exporter; later calls do nothing.

        Only the freezing runs here, on the caller's thread: request and response are
        serialized to JSON bytes at once. An exporter thread assembles the record from the
        ended span, which nothing changes any more: the setters raise after the end.
        """
        if self._ended:
            return
        self._ended = True
        end_perf = time.perf_counter()
        try:
            if not SETTINGS.get().enabled:
                return
            self._freeze(end_perf)
            get_exporter().submit(self)
        except Exception as error:
            internal_error("span.end", error)

    def _freeze(self, end_perf: float) -> None:
        """Serialize what the caller could still change, so the record keeps the values of now."""
        self._duration = max(0.0, end_perf - self._start_perf)
        if self._request is not None:
            self._request_json = snapshot_json(self._request)
        if self._response is not None:
            self._response_json = snapshot_json(self._response)
        if self._extra_properties is not None:
            self._extra_properties = dict(self._extra_properties)
        error = self._error
        if error is not None:
            self._error_status = exception_status(error)
            self._error_body = error_body(error)
