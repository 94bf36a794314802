"""Keep secrets out of records and log lines.

Provider and Helicone keys reach the toolkit through exception messages (an SDK's "Incorrect API
key provided: sk-..."), response headers and request headers. Text is scrubbed by pattern, and
headers are dropped by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

REDACTED: Final = "[REDACTED]"

# Bearer tokens, and key shapes used by OpenAI, Anthropic, Helicone, OpenRouter and others
# ("sk-...", "sk-ant-...", "sk-helicone-...", "pk-...", "rk-...").
_SECRET_PATTERNS: Final = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]{4,}"),
    re.compile(r"\b((?:sk|pk|rk)-)[A-Za-z0-9_\-]{6,}"),
    re.compile(
        r"(?i)((?:api[_-]?key|x-api-key|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{4,}"
    ),
)

# Header names whose values are credentials or session state, compared in lower case.
_SECRET_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "helicone-auth",
        "x-portkey-api-key",
    }
)
_SECRET_HEADER_WORDS: Final = re.compile(
    r"(?i)(api[-_]?key|secret|password|credential|session-token)"
)


def redact_text(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """Return `text` with bearer tokens, key-shaped strings and each of `extra_secrets` masked."""
    for secret in extra_secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return text


def is_secret_header(name: str) -> bool:
    lower = name.lower()
    return lower in _SECRET_HEADERS or _SECRET_HEADER_WORDS.search(lower) is not None


def safe_headers(headers: Mapping[str, object] | Iterable[tuple[object, object]]) -> dict[str, str]:
    """Return the headers as a str -> str dict without the ones that carry credentials."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    result: dict[str, str] = {}
    for name, value in items:
        key = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        if is_secret_header(key):
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        result[key.lower()] = text
    return result
