"""Read what the openai and anthropic SDKs' raw responses (`with_raw_response`) carry.

A handler that returns `client.chat.completions.with_raw_response.create(...)` (openai's
`LegacyAPIResponse`) or `client.messages.with_raw_response.create(...)` (anthropic's
`APIResponse` / `AsyncAPIResponse`) gives more than the parsed object: the provider's response
headers, the HTTP status, and the request that was sent. `unwrap_raw_response` returns those:

- body: the response body as the provider sent it, decoded from the bytes the SDK already read;
- headers: the response headers without credentials (`x-request-id`, `request-id`, rate-limit
  headers and `openai-processing-ms` stay);
- status and url: the HTTP status, and the request URL with credentials masked;
- metadata: the Portkey properties of the request headers, and a provider taken from the
  `x-portkey-provider` header or else from the URL's host.

The body is decoded from `http_response.content` instead of calling `.parse()`. Parsing builds
the SDK's pydantic objects, which costs about 20 times as much as decoding the JSON on the
caller's thread, and `AsyncAPIResponse.parse()` is a coroutine that cannot run here. The caller's
own `.parse()` is left alone: nothing is added to the SDK's cache of parsed values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from heliconetrace._diagnostics import internal_error
from heliconetrace._metadata import Metadata
from heliconetrace._portkey import PORTKEY_HOSTS, portkey_metadata
from heliconetrace._redact import REDACTED, is_secret_header, safe_headers

# The SDK modules whose raw response classes are read. Both SDKs name them `...APIResponse`.
_SDK_MODULES: Final = ("openai.", "anthropic.")
_RAW_CLASS_SUFFIX: Final = "APIResponse"

# Provider by the exact host of the request URL.
_PROVIDER_HOSTS: Final = MappingProxyType(
    {
        "api.openai.com": "openai",
        "api.anthropic.com": "anthropic",
        "api.groq.com": "groq",
        "api.together.xyz": "together",
        "api.mistral.ai": "mistral",
        "api.deepseek.com": "deepseek",
        "openrouter.ai": "openrouter",
        "api.fireworks.ai": "fireworks",
        "api.perplexity.ai": "perplexity",
    }
)
# Provider by the end of the host: Azure OpenAI resources are `<resource>.openai.azure.com`.
_PROVIDER_HOST_SUFFIXES: Final = ((".openai.azure.com", "azure"),)

# Query parameter names whose values are credentials (`?key=...`, `?api-key=...`, SAS `sig`).
_SECRET_QUERY_NAMES: Final = frozenset({"key", "token", "access_token", "sig", "signature"})


@dataclass(frozen=True, slots=True)
class RawResponse:
    """The parts of a raw SDK response that go into the record."""

    body: object
    headers: Mapping[str, str]
    status: int
    url: str | None
    metadata: Metadata


def provider_for_url(url: str | None) -> str | None:
    """Return the provider that serves `url`, or None for a gateway or an unknown host.

    Portkey's host gives None: its provider comes from the `x-portkey-provider` header.
    """
    if not url:
        return None
    host = (urlsplit(url).hostname or "").lower()
    if host in PORTKEY_HOSTS:
        return None
    provider = _PROVIDER_HOSTS.get(host)
    if provider is not None:
        return provider
    for suffix, suffix_provider in _PROVIDER_HOST_SUFFIXES:
        if host.endswith(suffix):
            return suffix_provider
    return None


def safe_url(url: str) -> str:
    """Return `url` without a user name or password, and with credential query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_is_secret_query_name(name) for name, _ in pairs):
            masked = [
                (name, REDACTED if _is_secret_query_name(name) else value) for name, value in pairs
            ]
            query = urlencode(masked, safe="[]")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _is_secret_query_name(name: str) -> bool:
    return name.lower() in _SECRET_QUERY_NAMES or is_secret_header(name)


def is_raw_response(value: object) -> bool:
    """Return whether `value` is a raw response of the openai or anthropic SDK, cheaply."""
    kind = type(value)
    return kind.__name__.endswith(_RAW_CLASS_SUFFIX) and kind.__module__.startswith(_SDK_MODULES)


def unwrap_raw_response(value: object) -> RawResponse | None:
    """Return what a raw SDK response carries, or None when `value` is not one.

    It runs on the caller's thread for every value a decorated handler returns, so anything that
    is not a raw response leaves after one type check.
    """
    if not is_raw_response(value):
        return None
    try:
        return _read(value)
    except Exception as error:
        internal_error("sdk.raw_response", error)
        return None


def _read(raw: Any) -> RawResponse:
    http_response = raw.http_response
    response_headers = raw.headers
    request = raw.http_request
    url = safe_url(str(request.url))

    metadata = portkey_metadata(request.headers, url, response_headers)
    if metadata.provider is None:
        provider = provider_for_url(url)
        if provider is not None:
            metadata = metadata.merged(Metadata(provider=provider))
    return RawResponse(
        body=_body(http_response),
        headers=safe_headers(response_headers),
        status=int(raw.status_code),
        url=url,
        metadata=metadata,
    )


def _body(http_response: Any) -> object:
    """Return the response body if the SDK has read it: a dict for JSON, a str for text.

    A streamed response (`stream=True`, or `with_streaming_response` before it was read) is
    left unread, because reading it here would take the stream from the caller.
    """
    # NOTE: the body of a streamed raw response is not logged; the record keeps its headers,
    # status and URL. Return the stream's chunks from a generator handler to log them.
    if not http_response.is_closed:
        return None
    try:
        content: bytes = http_response.content
    except RuntimeError:
        # httpx raises ResponseNotRead for a response closed before its body was read.
        return None
    content_type = http_response.headers.get("content-type", "").lower()
    if "json" in content_type:
        try:
            parsed: object = json.loads(content)
        except ValueError:
            return http_response.text
        return parsed
    if content_type.startswith("text/"):
        return http_response.text
    return None
