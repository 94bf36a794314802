"""Turn an ended span into the Helicone record to send, on an exporter thread.

The rules for what the record contains:

- status: -3 when the span was cancelled or closed early; else the exception's HTTP status
  (500 when it carries none); else the status of an error inside a stream; else the response's.
- response: the reassembled stream (its SSE text as `textBody`), or the returned object, or
  the text body; a failure's error body replaces a non-stream response and is added beside
  what a stream produced before it failed.
- model: the span's `model` fills a request that names none, and becomes
  `Helicone-Model-Override` when the request names another.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from heliconetrace._capture import CANCELLED_STATUS, redacted_copy
from heliconetrace._diagnostics import logger
from heliconetrace._endpoint import Endpoint
from heliconetrace._metadata import header_value, helicone_provider_name
from heliconetrace._record import (
    UNKNOWN_URL,
    LogRecord,
    ProviderRequest,
    ProviderResponse,
    Timestamp,
    Timing,
)
from heliconetrace._stream import StreamResult

if TYPE_CHECKING:
    from heliconetrace._span import Span


def _load_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {}
    loaded = json.loads(raw)
    return loaded if isinstance(loaded, dict) else {}


def stream_error_status(error: Mapping[str, Any]) -> int:
    """Return the HTTP status an error event inside a stream names, or 500."""
    inner = error.get("error", error)
    for source in (inner, error):
        if isinstance(source, Mapping):
            for key in ("status_code", "status", "code"):
                value = source.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                    return value
    return 500


def _meta(span: Span, request_json: dict[str, Any]) -> dict[str, str]:
    meta = {"Helicone-Request-Id": span.request_id, **span.metadata.meta()}
    for key, text in (span._extra_properties or {}).items():
        meta[f"Helicone-Property-{key}"] = header_value(text)
    if span._end_reason is not None:
        meta["Helicone-Property-End-Reason"] = span._end_reason

    model = span.metadata.model
    if model is not None:
        requested = request_json.get("model")
        if requested is None:
            request_json["model"] = model
        elif requested != model:
            meta["Helicone-Model-Override"] = header_value(model)
    return meta


_models_warned_about_usage: set[str] = set()
_usage_warning_lock = threading.Lock()


def _warn_missing_usage(request_json: Mapping[str, Any], result: StreamResult) -> None:
    """Warn once per model about an OpenAI-format stream that reported no token usage.

    Without usage Helicone records the tokens as -1 and computes no cost. The fix is in the
    caller's request, which is never changed here.
    """
    if result.usage_present or result.format not in ("openai-chat", "openai-completions"):
        return
    model = str(request_json.get("model") or result.model or "unknown")
    with _usage_warning_lock:
        if model in _models_warned_about_usage:
            return
        _models_warned_about_usage.add(model)
    options = request_json.get("stream_options")
    asked = isinstance(options, Mapping) and options.get("include_usage") is True
    logger.warning(
        "heliconetrace logged a stream without token usage, so Helicone cannot compute its cost",
        model=model,
        include_usage_requested=asked,
        fix="pass stream_options={'include_usage': True} in the request"
        if not asked
        else "the provider ignored stream_options.include_usage; check the gateway",
    )


def _response(
    span: Span, secrets: tuple[str, ...], request_json: Mapping[str, Any]
) -> tuple[dict[str, Any], str | None, int, float | None]:
    """Return the response json, text body, status and first-content time (perf_counter)."""
    response_json: dict[str, Any] = {}
    text_body: str | None = None
    status = span._response_status
    first_content_at: float | None = None

    if span._stream is not None:
        result = span._stream.finish()
        # A stream cut short never got to its usage chunk, so only complete streams tell.
        if span._end_reason is None and span._error_body is None:
            _warn_missing_usage(request_json, result)
        response_json = dict(result.json)
        text_body = result.text_body or None
        first_content_at = result.first_content_at
        if result.error is not None:
            response_json.setdefault("error", result.error)
            status = stream_error_status(result.error)
    elif span._response_text is not None:
        text_body = span._response_text
        response_json = _load_object(span._response_json)
    elif span._response_json is not None:
        response_json = _load_object(span._response_json)
    elif isinstance(span._response, str):
        text_body = span._response
    elif span._response is not None:
        # Not object-shaped (a list, a number): serialized under "output".
        response_json = {"output": span._response}

    error = redacted_copy(span._error_body, secrets) if span._error_body is not None else None
    if span._end_reason is not None:
        status = CANCELLED_STATUS
        if error is None and not response_json:
            message = f"the request was {span._end_reason} before it finished"
            error = {"error": {"message": message, "type": span._end_reason}}
    elif span._error_status is not None:
        status = span._error_status

    if error is not None:
        if span._stream is None or not response_json:
            response_json = error
        else:
            response_json.setdefault("error", error.get("error", error))
    return response_json, text_body, status, first_content_at


def assemble(span: Span, endpoint: Endpoint, secrets: tuple[str, ...]) -> bytes:
    """Build and serialize the record of an ended span for `endpoint`'s kind of server."""
    request_json = _load_object(span._request_json)
    meta = _meta(span, request_json)
    response_json, text_body, status, first_content_at = _response(span, secrets, request_json)
    if span._stream is not None:
        request_json["stream"] = True

    time_to_first_token = None
    if first_content_at is not None:
        time_to_first_token = round(max(0.0, first_content_at - span._start_perf) * 1000, 3)

    record = LogRecord(
        providerRequest=ProviderRequest(
            url=span._request_url or UNKNOWN_URL, body=request_json, meta=meta
        ),
        providerResponse=ProviderResponse(
            body=response_json,
            textBody=text_body,
            status=status,
            headers=dict(span._response_headers),
        ),
        timing=Timing(
            startTime=Timestamp.from_epoch(span._start_time),
            endTime=Timestamp.from_epoch(span._start_time + span._duration),
            timeToFirstToken=time_to_first_token,
        ),
        provider=helicone_provider_name(span.metadata.provider)
        if endpoint.server == "jawn"
        else None,
    )
    return record.to_json()
