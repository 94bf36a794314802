"""Check log bodies against Helicone's worker validator and the stricter record heliconetrace sends.

The worker rules and their messages follow ``validateAsyncLogModel`` in Helicone's
``worker/src/lib/models/AsyncLog.ts`` (commit c8d63197738b10a35bd0b23d88583113cb16243d).
The worker stops at its first failed rule. `validate_worker_body` collects every violation in
the worker's order, so its first entry is the message a strict receiver returns in its 400 response.

On top of the worker's rules, heliconetrace promises:

- ``meta`` and ``providerResponse.headers`` are JSON objects whose values are all strings;
- both ``json`` fields are JSON objects;
- ``status`` is an integer, and ``seconds`` and ``milliseconds`` are integers;
- ``milliseconds`` lies in 0..999;
- ``timing.timeToFirstToken``, if present, is a non-negative number;
- ``providerResponse.textBody``, if present, is a string;
- ``provider``, if present, is a non-empty upper-case string such as ``"OPENAI"``.

The worker runs on JavaScript, where ``typeof null`` and ``typeof []`` are ``"object"``, so it
accepts ``null`` or an array for ``meta`` and ``headers``. This module rejects both.
"""

from __future__ import annotations

import math
from typing import Any

MISSING_PART = "One of the required fields is missing, providerRequest, providerResponse, or timing"
START_AFTER_END = "startTime cannot be greater than endTime"
NEGATIVE_TIME = "startTime and endTime cannot be negative"
INVALID_TIME = "Invalid timing structure or value type"

# JavaScript's Date covers at most 8.64e15 ms either side of the epoch. Beyond that the worker's
# `new Date(...)` is NaN, and the worker returns INVALID_TIME.
_MAX_DATE_MS = 8.64e15


def _is_number(value: object) -> bool:
    """Match JavaScript's ``typeof value === "number"`` for parsed JSON, where bool is no number."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_js_truthy(value: object) -> bool:
    """Apply JavaScript truthiness to a parsed JSON value: empty objects and arrays are true."""
    if value is None or value is False:
        return False
    if _is_number(value):
        return value != 0 and not math.isnan(value)  # type: ignore[arg-type]
    if isinstance(value, str):
        return value != ""
    return True


def _check_string_values(mapping: dict[str, Any], part: str, field: str) -> list[str]:
    return [
        f"Invalid {part}: '{field}.{key}' should be a string"
        for key, value in mapping.items()
        if not isinstance(value, str)
    ]


def _check_provider_request(request: object) -> list[str]:
    if not isinstance(request, dict):
        return ["Invalid providerRequest: should be an object"]
    errors: list[str] = []
    if not isinstance(request.get("url"), str):
        errors.append("Invalid providerRequest: 'url' should be a string")

    meta = request.get("meta")
    if not isinstance(meta, dict):
        errors.append("Invalid providerRequest: 'meta' should be an object")
    else:
        errors += _check_string_values(meta, "providerRequest", "meta")

    if "json" not in request:
        errors.append("Invalid providerRequest: 'json' is undefined")
    elif not isinstance(request["json"], dict):
        errors.append("Invalid providerRequest: 'json' should be an object")
    return errors


def _check_provider_response(response: object) -> list[str]:
    if not isinstance(response, dict):
        return ["Invalid providerResponse: should be an object"]
    errors: list[str] = []
    if "json" not in response:
        errors.append("Invalid providerResponse: 'json' is undefined")
    elif not isinstance(response["json"], dict):
        errors.append("Invalid providerResponse: 'json' should be an object")

    if "textBody" in response and not isinstance(response["textBody"], str):
        errors.append("Invalid providerResponse: 'textBody' should be a string")

    status = response.get("status")
    if not _is_number(status):
        errors.append("Invalid providerResponse: 'status' should be a number")
    elif not _is_integer(status):
        errors.append("Invalid providerResponse: 'status' should be an integer")

    headers = response.get("headers")
    if not isinstance(headers, dict):
        errors.append("Invalid providerResponse: 'headers' should be an object")
    else:
        errors += _check_string_values(headers, "providerResponse", "headers")
    return errors


def _check_time_point(timing: dict[str, Any], name: str) -> tuple[list[str], float | None]:
    """Check ``timing[name]`` and return its violations and its epoch milliseconds, if valid."""
    point = timing.get(name)
    if not isinstance(point, dict):
        return [f"Invalid timing: '{name}' should be an object with seconds and milliseconds"], None
    errors: list[str] = []
    for field in ("seconds", "milliseconds"):
        value = point.get(field)
        if not _is_number(value):
            errors.append(f"Invalid timing: '{name}.{field}' should be a number")
        elif not _is_integer(value):
            errors.append(f"Invalid timing: '{name}.{field}' should be an integer")
    if errors:
        return errors, None

    milliseconds = point["milliseconds"]
    if not 0 <= milliseconds <= 999:
        errors.append(f"Invalid timing: '{name}.milliseconds' should be between 0 and 999")
    return errors, point["seconds"] * 1000 + milliseconds


def _check_timing(timing: object) -> list[str]:
    if not isinstance(timing, dict):
        return ["Invalid timing: should be an object"]
    start_errors, start_ms = _check_time_point(timing, "startTime")
    end_errors, end_ms = _check_time_point(timing, "endTime")
    errors = start_errors + end_errors

    if start_ms is not None and end_ms is not None:
        if abs(start_ms) > _MAX_DATE_MS or abs(end_ms) > _MAX_DATE_MS:
            errors.append(INVALID_TIME)
        elif start_ms > end_ms:
            errors.append(START_AFTER_END)
        elif start_ms < 0 or end_ms < 0:
            errors.append(NEGATIVE_TIME)

    if "timeToFirstToken" in timing:
        ttft = timing["timeToFirstToken"]
        if not _is_number(ttft) or not math.isfinite(ttft) or ttft < 0:
            errors.append("Invalid timing: 'timeToFirstToken' should be a non-negative number")
    return errors


def validate_worker_body(body: object) -> list[str]:
    """Return the rules a parsed log body breaks, in the worker's order (empty if it is valid)."""
    if not isinstance(body, dict):
        return [f"Invalid body: should be a JSON object, not {type(body).__name__}"]

    errors: list[str] = []
    parts = ("providerRequest", "providerResponse", "timing")
    if not all(_is_js_truthy(body.get(part)) for part in parts):
        errors.append(MISSING_PART)

    if _is_js_truthy(body.get("providerRequest")):
        errors += _check_provider_request(body["providerRequest"])
    if _is_js_truthy(body.get("providerResponse")):
        errors += _check_provider_response(body["providerResponse"])
    if _is_js_truthy(body.get("timing")):
        errors += _check_timing(body["timing"])

    if "provider" in body:
        provider = body["provider"]
        if not isinstance(provider, str) or not provider or provider != provider.upper():
            errors.append('Invalid provider: should be an upper-case string such as "OPENAI"')
    return errors


def assert_valid_record(body: object) -> None:
    """Raise AssertionError listing every violation if ``body`` is not a valid log body."""
    errors = validate_worker_body(body)
    if errors:
        listing = "\n".join(f"- {error}" for error in errors)
        raise AssertionError(f"log body breaks {len(errors)} rule(s):\n{listing}\nbody: {body!r}")
