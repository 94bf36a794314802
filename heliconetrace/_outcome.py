"""What Helicone's response to one POST means: delivered, retry, rejected, or too large, with a
text safe to log and the fix to suggest.

| response                                  | verdict       | because                            |
|-------------------------------------------|---------------|------------------------------------|
| 2xx                                       | DELIVERED     |                                    |
| 200 with a body `{"error": ...}`          | RETRY         | the worker failed to store the log |
| 408, 429, 5xx; network error; timeout     | RETRY         | these pass with time               |
| 413; the worker's 400 "Payload too large" | TOO_LARGE     | trimmed, then sent once more       |
| 400 and the other 4xx                     | REJECTED      | the record itself is refused       |
| 401, 403, 404, 3xx; TLS on a plain port   | MISCONFIGURED | every record fails until fixed     |

A 401 or 403 body is never kept: jawn echoes the Authorization header in it.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httpx

from heliconetrace._endpoint import JAWN_LOG_PATH, WORKER_DEFAULT_PATH
from heliconetrace._redact import redact_text
from heliconetrace._retry import parse_retry_after


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    TOO_LARGE = "too_large"
    REJECTED = "rejected"
    MISCONFIGURED = "misconfigured"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The meaning of one response, or of the exception raised instead of one."""

    verdict: Verdict
    # The diagnostic class, such as "http-401", "error-200", "network" or "timeout".
    kind: str
    # Why it failed, safe to log; None when delivered.
    error: str | None = None
    status: int | None = None
    retry_after: float | None = None


DELIVERED: Final = Outcome(Verdict.DELIVERED, "delivered")

_RETRY_STATUSES: Final = frozenset({408, 429})
_CONFIGURATION_STATUSES: Final = frozenset({401, 403, 404})
_WORKER_TOO_LARGE_TEXT: Final = "payload too large"
_MAX_ERROR_TEXT: Final = 300
_WORKER_PATH_ENDINGS: Final = (WORKER_DEFAULT_PATH, "/oai/v1/log", "/anthropic/v1/log")


def error_in_body(content: bytes) -> str | None:
    """Return the error of a 2xx body `{"error": ...}`, or None for a body that means success."""
    if not content.lstrip().startswith(b"{"):
        return None
    try:
        parsed = json.loads(content)
    except ValueError:
        return None
    if isinstance(parsed, dict) and parsed.get("error"):
        return str(parsed["error"])[:_MAX_ERROR_TEXT]
    return None


def classify_response(response: httpx.Response, secrets: tuple[str, ...]) -> Outcome:
    """Classify Helicone's response; its body must be read already."""
    status = response.status_code
    if 200 <= status < 300:
        error = error_in_body(response.content)
        if error is None:
            return DELIVERED
        return Outcome(Verdict.RETRY, "error-200", redact_text(error, secrets), status)

    if status in (401, 403):
        # The body is not read into the error: jawn echoes the Authorization header there.
        return Outcome(Verdict.MISCONFIGURED, f"http-{status}", f"HTTP {status}", status)

    text = redact_text(response.text[:_MAX_ERROR_TEXT], secrets)
    error = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    kind = f"http-{status}"
    if status == 413 or (status == 400 and _WORKER_TOO_LARGE_TEXT in text.lower()):
        return Outcome(Verdict.TOO_LARGE, kind, error, status)
    if status in _RETRY_STATUSES or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return Outcome(Verdict.RETRY, kind, error, status, retry_after)
    if status in _CONFIGURATION_STATUSES or 300 <= status < 400:
        return Outcome(Verdict.MISCONFIGURED, kind, error, status)
    return Outcome(Verdict.REJECTED, kind, error, status)


def _is_tls_mismatch(error: BaseException) -> bool:
    """True when the TLS handshake got a reply that is not TLS: the port speaks plain HTTP.

    OpenSSL reports that as "wrong version number", in the error or one it wraps.
    """
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if "wrong version number" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def classify_error(error: httpx.HTTPError, secrets: tuple[str, ...]) -> Outcome:
    """Classify an exception raised instead of a response."""
    text = redact_text(f"{type(error).__name__}: {error}", secrets)[:_MAX_ERROR_TEXT]
    if _is_tls_mismatch(error):
        return Outcome(Verdict.MISCONFIGURED, "tls-mismatch", text)
    if isinstance(error, httpx.TimeoutException):
        return Outcome(Verdict.RETRY, "timeout", text)
    if isinstance(error, (httpx.NetworkError, httpx.RemoteProtocolError)):
        return Outcome(Verdict.RETRY, "network", text)
    if isinstance(error, httpx.TransportError) and not isinstance(
        error, (httpx.UnsupportedProtocol, httpx.ProxyError)
    ):
        return Outcome(Verdict.RETRY, "network", text)
    return Outcome(Verdict.MISCONFIGURED, "request-error", text)


_FIX_401_WORKER: Final = (
    "Helicone does not know this API key. A key works only in the region and instance that "
    "issued it: EU keys need HELICONE_BASE_URL=https://eu.api.helicone.ai, and keys of a "
    "self-hosted Helicone work only there."
)
_FIX_401_JAWN: Final = (
    'A 401 from a self-hosted (jawn) server, whose text is "No API key found", means the key is '
    "not in that instance's database: keys from Helicone cloud, the EU region or another "
    "instance do not work there, nor keys from before a database reset, nor deleted keys; "
    "create one in this instance's dashboard. A URL prefix such as /jawn, or https:// on the "
    "plain-HTTP port 8585, gives the same error: use HELICONE_BASE_URL=http://your-host:8585."
)
_FIX_403: Final = "Helicone refused the API key for this organization; check its permissions."
_FIX_404_WORKER_PATH: Final = (
    "This server has no {path}: it is a self-hosted or jawn server, which takes "
    f"{JAWN_LOG_PATH}. Set HELICONE_BASE_URL to the server's root URL "
    "(http://your-host:8585) and leave HELICONETRACE_LOG_URL unset."
)
_FIX_404: Final = (
    f"The server has no such log path. A self-hosted or jawn server takes {JAWN_LOG_PATH}: set "
    "HELICONE_BASE_URL to the server's root URL, or HELICONETRACE_LOG_URL to the full log URL."
)
_FIX_REDIRECT: Final = (
    "The server redirects the log URL. Set HELICONETRACE_LOG_URL or HELICONE_BASE_URL to the "
    "URL it redirects to."
)
_FIX_TLS: Final = (
    "The server does not speak TLS on this port. A self-hosted jawn serves plain HTTP on "
    "port 8585: use http://, not https://, in HELICONE_BASE_URL."
)
_FIX_NETWORK: Final = (
    "Helicone could not be reached; check HELICONE_BASE_URL, the network, and that the server "
    "runs. Records are retried with backoff."
)
_FIX_TIMEOUT: Final = (
    "Helicone did not answer within HELICONETRACE_REQUEST_TIMEOUT seconds. Records are retried "
    "with backoff; raise the timeout if the server is slow but working."
)
_FIX_RATE_LIMIT: Final = (
    "Helicone is rate limiting this key. Records are retried after the Retry-After delay."
)
_FIX_SERVER_ERROR: Final = (
    "Helicone had a server error and did not store the record. Records are retried with backoff."
)
_FIX_REJECTED: Final = "Helicone rejected the record; the error text says why."
_FIX_TOO_LARGE: Final = (
    "The record is larger than the server takes; heliconetrace replaced its bodies with a "
    "marker (property Trimmed) and sent it once more. A proxy in front of Helicone may have a "
    "lower limit (nginx allows 1 MB by default)."
)
_FIX_REQUEST: Final = (
    "The log URL cannot be used; check HELICONE_BASE_URL and HELICONETRACE_LOG_URL."
)


def fix_for(outcome: Outcome, url: str, server: str) -> str:
    """Return what the user should do about `outcome` of a POST to `url` on a `server`."""
    status = outcome.status
    if outcome.kind == "tls-mismatch":
        return _FIX_TLS
    if outcome.kind == "timeout":
        return _FIX_TIMEOUT
    if outcome.kind == "network":
        return _FIX_NETWORK
    if outcome.kind == "request-error":
        return _FIX_REQUEST
    if status == 401:
        return _FIX_401_JAWN if server == "jawn" else _FIX_401_WORKER
    if status == 403:
        return _FIX_403
    if status == 404:
        path = urlsplit(url).path
        if path.endswith(_WORKER_PATH_ENDINGS):
            return _FIX_404_WORKER_PATH.format(path=path)
        return _FIX_404
    if status is not None and 300 <= status < 400:
        return _FIX_REDIRECT
    if outcome.verdict is Verdict.TOO_LARGE:
        return _FIX_TOO_LARGE
    if status == 429:
        return _FIX_RATE_LIMIT
    if outcome.verdict is Verdict.RETRY:
        return _FIX_SERVER_ERROR
    return _FIX_REJECTED
