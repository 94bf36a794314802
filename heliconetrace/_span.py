"""A span: one handled LLM request, from start to end, and the record it becomes.

A span collects the request, the response (or the streamed items, or the error) and the
metadata while the handler runs. `end()` freezes all of it into a serialized record at once, so a
caller that changes a returned dict afterwards does not change what is logged, and hands the
record to the exporter.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

from heliconetrace._capture import (
    CANCELLED_STATUS,
    error_body,
    exception_status,
    to_json_object,
)
from heliconetrace._config import SETTINGS, Settings
from heliconetrace._diagnostics import internal_error
from heliconetrace._endpoint import resolve_endpoint
from heliconetrace._errors import MetadataError
from heliconetrace._exporter import Envelope, get_exporter
from heliconetrace._metadata import (
    Metadata,
    check_property,
    header_value,
    helicone_provider_name,
)
from heliconetrace._record import (
    UNKNOWN_URL,
    LogRecord,
    ProviderRequest,
    ProviderResponse,
    Timestamp,
    Timing,
)
from heliconetrace._redact import safe_headers
from heliconetrace._stream import StreamRecorder

# Why a span ended without a normal return or an exception, sent as a property.
END_CANCELLED: Final = "cancelled"
END_CLOSED: Final = "closed"
END_ABANDONED: Final = "abandoned"


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

    __slots__ = (
        "_end_reason",
        "_ended",
        "_error",
        "_extra_properties",
        "_metadata",
        "_request",
        "_request_by_user",
        "_request_url",
        "_response",
        "_response_by_user",
        "_response_headers",
        "_response_status",
        "_response_text",
        "_start_perf",
        "_start_time",
        "_stream",
        "parent",
        "request_id",
    )

    def __init__(
        self,
        metadata: Metadata,
        *,
        request_id: str | None = None,
        parent: Span | None = None,
    ) -> None:
        self.request_id: str = request_id if request_id is not None else str(uuid.uuid4())
        self.parent = parent
        self._metadata = metadata
        self._start_time = time.time()
        self._start_perf = time.perf_counter()
        self._request: object = None
        self._request_by_user = False
        self._request_url: str | None = None
        self._response: object = None
        self._response_by_user = False
        self._response_text: str | None = None
        self._response_status = 200
        self._response_headers: dict[str, str] = {}
        self._error: BaseException | None = None
        self._end_reason: str | None = None
        self._extra_properties: dict[str, str] = {}
        self._stream: StreamRecorder | None = None
        self._ended = False

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

        `json` is a mapping, a pydantic model or an SDK object. `headers` are the request headers;
        they are never logged (Helicone's record has no place for them).
        """
        if to_json_object(json) is None:
            raise TypeError(
                f"set_request() needs a mapping or pydantic model as json, not "
                f"{type(json).__name__}. Pass the request body, e.g. {{'model': ..., "
                "'messages': [...]}."
            )
        if url is not None and not isinstance(url, str):
            raise TypeError(f"set_request(url={url!r}) needs a string URL.")
        self._request = json
        self._request_by_user = True
        self._request_url = url

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
        if json is not None and to_json_object(json) is None:
            raise TypeError(
                f"set_response() needs a mapping or pydantic model as json, not "
                f"{type(json).__name__}. Pass plain text as text=..."
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
        key, text = check_property(name, value)
        self._extra_properties[key] = text

    def update_metadata(self, metadata: Metadata) -> None:
        """Apply metadata bound while the span is open (see `bind()`)."""
        self._metadata = self._metadata.merged(metadata)

    # The methods below are the decorator's. They never raise into the caller's code.

    def capture_request(self, value: object) -> None:
        if not self._request_by_user and value is not None:
            self._request = value

    def capture_response(self, value: object) -> None:
        if not self._response_by_user:
            self._response = value

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
        """Freeze the span into a record and hand it to the exporter; later calls do nothing."""
        if self._ended:
            return
        self._ended = True
        end_perf = time.perf_counter()
        try:
            settings = SETTINGS.get()
            if not settings.enabled:
                return
            envelope = self._build(settings, end_perf)
            get_exporter().submit(envelope)
        except Exception as error:
            internal_error("span.end", error)

    def _build(self, settings: Settings, end_perf: float) -> Envelope:
        metadata = self._metadata
        endpoint = resolve_endpoint(settings.base_url, settings.log_url, metadata.provider)
        secrets = (settings.api_key.get_secret_value(),) if settings.api_key else ()

        request_json = dict(to_json_object(self._request) or {})
        meta = {"Helicone-Request-Id": self.request_id, **metadata.meta()}
        for key, text in self._extra_properties.items():
            meta[f"Helicone-Property-{key}"] = header_value(text)
        if self._end_reason is not None:
            meta["Helicone-Property-End-Reason"] = self._end_reason

        # The model the caller named wins for cost: in the body when the request has none,
        # as Helicone's model override when the request names another.
        if metadata.model is not None:
            requested = request_json.get("model")
            if requested is None:
                request_json["model"] = metadata.model
            elif requested != metadata.model:
                meta["Helicone-Model-Override"] = header_value(metadata.model)

        response_json, text_body, status, first_content_at = self._response_parts(secrets)
        if self._stream is not None:
            request_json["stream"] = True

        duration = max(0.0, end_perf - self._start_perf)
        time_to_first_token = None
        if first_content_at is not None:
            time_to_first_token = round(max(0.0, first_content_at - self._start_perf) * 1000, 3)

        record = LogRecord(
            providerRequest=ProviderRequest(
                url=self._request_url or UNKNOWN_URL, body=request_json, meta=meta
            ),
            providerResponse=ProviderResponse(
                body=response_json,
                textBody=text_body,
                status=status,
                headers=self._response_headers,
            ),
            timing=Timing(
                startTime=Timestamp.from_epoch(self._start_time),
                endTime=Timestamp.from_epoch(self._start_time + duration),
                timeToFirstToken=time_to_first_token,
            ),
            provider=helicone_provider_name(metadata.provider)
            if endpoint.server == "jawn"
            else None,
        )
        return Envelope(body=record.to_json(), url=endpoint.url, request_id=self.request_id)

    def _response_parts(
        self, secrets: tuple[str, ...]
    ) -> tuple[dict[str, Any], str | None, int, float | None]:
        """Return the response json, text body, status and first-content time to log."""
        response_json: dict[str, Any] = {}
        text_body: str | None = None
        status = self._response_status
        first_content_at: float | None = None

        if self._stream is not None:
            result = self._stream.finish()
            response_json = dict(result.json)
            text_body = result.text_body or None
            first_content_at = result.first_content_at
            if result.error is not None:
                response_json.setdefault("error", result.error)
                status = _stream_error_status(result.error)
        elif self._response_text is not None:
            text_body = self._response_text
            response_json = dict(to_json_object(self._response) or {})
        elif self._response is not None:
            as_object = to_json_object(self._response)
            if as_object is not None:
                response_json = dict(as_object)
            elif isinstance(self._response, str):
                text_body = self._response
            else:
                response_json = {"output": self._response}

        if self._end_reason is not None:
            status = CANCELLED_STATUS
        elif self._error is not None:
            status = exception_status(self._error)
            if self._stream is None or not response_json:
                response_json = error_body(self._error, secrets)
            else:
                response_json.setdefault("error", error_body(self._error, secrets)["error"])
        return response_json, text_body, status, first_content_at


def _stream_error_status(error: Mapping[str, Any]) -> int:
    """Return the HTTP status an error event in a stream names, or 500."""
    inner = error.get("error", error)
    for source in (inner, error):
        if isinstance(source, Mapping):
            for key in ("status_code", "status", "code"):
                value = source.get(key)
                if isinstance(value, int) and 100 <= value <= 599:
                    return value
    return 500
