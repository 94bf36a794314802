"""Turn Portkey gateway headers into Helicone properties and a provider.

A service that calls its provider through Portkey sends `x-portkey-*` request headers. Four of
them describe the request and become Helicone properties:

| request header          | Helicone meta key                               |
|-------------------------|-------------------------------------------------|
| `x-portkey-virtual-key` | `Helicone-Property-Portkey-Virtual-Key`         |
| `x-portkey-provider`    | `Helicone-Property-Portkey-Provider`            |
| `x-portkey-trace-id`    | `Helicone-Property-Portkey-Trace-Id`            |
| `x-portkey-metadata`    | one `Helicone-Property-<key>` per key of its JSON object |

Credential headers (`x-portkey-api-key`, `Authorization`, `api-key`, ...) and metadata keys that
name a credential never become properties. Portkey returns `x-portkey-trace-id` on every response,
so a trace id missing from the request is read from the response headers when they are given.

`x-portkey-provider` also sets the span's provider, but only when the response comes back in that
provider's own format. Portkey's unified route (`/v1/chat/completions` and the other OpenAI
paths) returns responses in OpenAI's format whatever the provider, so there only providers whose
own API is OpenAI-shaped count. On the Anthropic route (`/v1/messages`) only `anthropic` counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

from heliconetrace._diagnostics import warning_limited
from heliconetrace._errors import MetadataError
from heliconetrace._metadata import EMPTY, Metadata, check_property
from heliconetrace._redact import is_secret_header, redact_text

PORTKEY_HOSTS: Final = frozenset({"api.portkey.ai"})

HEADER_VIRTUAL_KEY: Final = "x-portkey-virtual-key"
HEADER_PROVIDER: Final = "x-portkey-provider"
HEADER_TRACE_ID: Final = "x-portkey-trace-id"
HEADER_METADATA: Final = "x-portkey-metadata"

# Request header -> property name.
_PROPERTY_HEADERS: Final = MappingProxyType(
    {
        HEADER_VIRTUAL_KEY: "Portkey-Virtual-Key",
        HEADER_PROVIDER: "Portkey-Provider",
        HEADER_TRACE_ID: "Portkey-Trace-Id",
    }
)

# Portkey's provider slug -> heliconetrace's provider name, for providers whose own API has
# OpenAI's request and response format. Slugs as Portkey's provider documentation lists them.
_OPENAI_FORMAT_PROVIDERS: Final = MappingProxyType(
    {
        "openai": "openai",
        "azure-openai": "azure",
        "groq": "groq",
        "together-ai": "together",
        "mistral-ai": "mistral",
        "deepseek": "deepseek",
        "openrouter": "openrouter",
        "fireworks-ai": "fireworks",
        "perplexity-ai": "perplexity",
    }
)
_ANTHROPIC_ROUTE_SUFFIX: Final = "/messages"


def provider_for_route(slug: str, url: str | None) -> str | None:
    """Return the provider whose format Portkey returns for `slug` on `url`'s route, or None.

    With no URL the unified (OpenAI-format) route is assumed, because that is Portkey's default.
    """
    slug = slug.strip().lower()
    path = urlsplit(url).path.rstrip("/") if url else ""
    if path.endswith(_ANTHROPIC_ROUTE_SUFFIX):
        return "anthropic" if slug == "anthropic" else None
    return _OPENAI_FORMAT_PROVIDERS.get(slug)


def _metadata_properties(text: str) -> dict[str, str]:
    """Return the properties of an `x-portkey-metadata` value; invalid entries are skipped."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        warning_limited(
            "portkey-metadata",
            "heliconetrace ignored an x-portkey-metadata header that is not a JSON object",
            fix='send a JSON object of strings, for example {"_user": "u-42", "env": "prod"}',
        )
        return {}
    properties: dict[str, str] = {}
    for key, value in parsed.items():
        if is_secret_header(key):
            continue
        _add_property(properties, key, value)
    return properties


def _add_property(properties: dict[str, str], name: str, value: object) -> None:
    if isinstance(value, str):
        value = redact_text(value)
    try:
        checked_name, text = check_property(name, value)
    except MetadataError as error:
        warning_limited(
            "portkey-property",
            "heliconetrace skipped a Portkey value that cannot be a Helicone property",
            error=str(error)[:200],
        )
        return
    properties[checked_name] = text


def portkey_metadata(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    url: str | None = None,
    response_headers: Mapping[str, str] | None = None,
) -> Metadata:
    """Return the properties and provider that Portkey request headers describe (EMPTY if none).

    `headers` are the request headers, `url` the request URL (it decides which providers count,
    see the module docstring), and `response_headers` the response headers, if known.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        lower = name.lower()
        if lower.startswith("x-portkey-"):
            found[lower] = value
    if HEADER_TRACE_ID not in found and response_headers is not None:
        trace_id = response_headers.get(HEADER_TRACE_ID)
        if trace_id:
            found[HEADER_TRACE_ID] = trace_id
    if not found:
        return EMPTY

    properties: dict[str, str] = {}
    metadata_text = found.get(HEADER_METADATA)
    if metadata_text is not None:
        properties.update(_metadata_properties(metadata_text))
    for header, property_name in _PROPERTY_HEADERS.items():
        value = found.get(header)
        if value:
            _add_property(properties, property_name, value)

    slug = found.get(HEADER_PROVIDER)
    provider = provider_for_route(slug, url) if slug else None
    if not properties and provider is None:
        return EMPTY
    return Metadata(properties=MappingProxyType(properties), provider=provider)
