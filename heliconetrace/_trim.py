"""Keep a record under the size a Helicone server takes, by replacing its bodies with a marker.

Helicone's cloud worker responds 400 "Payload too large" above 10 MiB, and jawn's JSON parser
responds 413 above 50 MiB ("50mb" in body-parser counts 1024 * 1024 bytes per MB). A record
over the limit would fail on every attempt, so it is trimmed before it is sent, in this order,
until it fits:

1. `providerResponse.textBody` (the raw text of a stream) is removed, and with it the request's
   `stream` flag, so that Helicone reads the kept response JSON as a whole response;
2. `providerResponse.json` keeps only `id`, `object`, `model` and `usage`;
3. `providerRequest.json` keeps only `model` and `user`;
4. `providerResponse.headers` is emptied.

Model and token usage survive, so Helicone still computes cost. The meta property
`Helicone-Property-Trimmed` lists the parts replaced, and `Helicone-Property-Trimmed-From-Bytes`
gives the size before. A record that still does not fit (metadata alone over the limit) is
dropped and counted. The worker's limit is measured on `JSON.stringify(body).length`, which
for compact JSON is at most the UTF-8 byte length used here; a margin covers number formatting.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

WORKER_MAX_BODY: Final = 10 * 1024 * 1024
JAWN_MAX_BODY: Final = 50 * 1024 * 1024
SAFETY_MARGIN: Final = 64 * 1024

TRIMMED_PROPERTY: Final = "Helicone-Property-Trimmed"
TRIMMED_FROM_PROPERTY: Final = "Helicone-Property-Trimmed-From-Bytes"

_KEPT_RESPONSE_KEYS: Final = ("id", "object", "model", "usage")
_KEPT_REQUEST_KEYS: Final = ("model", "user")


def max_body_bytes(server: str) -> int:
    """Return the largest record, in bytes, to send to a server of this kind."""
    return (WORKER_MAX_BODY if server == "worker" else JAWN_MAX_BODY) - SAFETY_MARGIN


def _serialize(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def _keep(value: object, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {key: value[key] for key in keys if key in value}


def _drop_text_body(record: dict[str, Any]) -> bool:
    response = record.get("providerResponse", {})
    if "textBody" not in response:
        return False
    del response["textBody"]
    request_json = record.get("providerRequest", {}).get("json")
    if isinstance(request_json, dict):
        request_json.pop("stream", None)
    return True


def _slim_response_json(record: dict[str, Any]) -> bool:
    response = record.get("providerResponse", {})
    response["json"] = _keep(response.get("json"), _KEPT_RESPONSE_KEYS)
    return True


def _slim_request_json(record: dict[str, Any]) -> bool:
    request = record.get("providerRequest", {})
    request["json"] = _keep(request.get("json"), _KEPT_REQUEST_KEYS)
    return True


def _empty_headers(record: dict[str, Any]) -> bool:
    record.get("providerResponse", {})["headers"] = {}
    return True


_STEPS: Final[tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...]] = (
    ("providerResponse.textBody", _drop_text_body),
    ("providerResponse.json", _slim_response_json),
    ("providerRequest.json", _slim_request_json),
    ("providerResponse.headers", _empty_headers),
)


def trim(body: bytes, limit: int, *, everything: bool = False) -> bytes | None:
    """Return `body` trimmed to at most `limit` bytes, or None when it cannot be made to fit.

    A body within the limit comes back unchanged unless `everything` is set, which applies all
    the steps (after a server refused the record as too large although it was within `limit`).
    """
    if len(body) <= limit and not everything:
        return body
    record = json.loads(body)
    meta = record.get("providerRequest", {}).get("meta")
    if not isinstance(meta, dict):
        return None

    trimmed: list[str] = []
    result = body
    for part, step in _STEPS:
        if step(record):
            trimmed.append(part)
        meta[TRIMMED_PROPERTY] = ",".join(trimmed)
        meta[TRIMMED_FROM_PROPERTY] = str(len(body))
        result = _serialize(record)
        if len(result) <= limit and not everything:
            return result
    return result if len(result) <= limit else None
