"""Span metadata: the options shared by `@helicone_logged`, `helicone_span()` and `bind()`.

Metadata is immutable. An inner scope's values override the outer scope's field by field, and
properties merge key by key, so `merged()` never changes either side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Final
from urllib.parse import quote

from heliconetrace._diagnostics import warning_limited
from heliconetrace._errors import MetadataError

# Names of the options every scope accepts, in the order the docs list them.
OPTION_NAMES: Final = (
    "model",
    "provider",
    "user",
    "session_id",
    "session_path",
    "session_name",
    "properties",
    "virtual_key",
    "name",
)

# HTTP header token characters (RFC 9110, section 5.6.2): a property name ends up in a header name.
_TOKEN: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_PROVIDER: Final = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Printable ASCII is kept as it is; everything else is percent-encoded (see `header_value`).
_SAFE_ASCII: Final = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")

_EMPTY_PROPERTIES: Final[Mapping[str, str]] = MappingProxyType({})

# Helicone's provider names (the `provider` field of a jawn log), by our lower-case name.
HELICONE_PROVIDER_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "openai": "OPENAI",
        "azure": "AZURE",
        "anthropic": "ANTHROPIC",
        "google": "GOOGLE",
        "together": "TOGETHER",
        "groq": "GROQ",
        "mistral": "MISTRAL",
        "deepseek": "DEEPSEEK",
        "openrouter": "OPENROUTER",
        "fireworks": "FIREWORKS",
        "perplexity": "PERPLEXITY",
        "cohere": "COHERE",
        "bedrock": "AWS",
    }
)


def helicone_provider_name(provider: str | None) -> str:
    """Return the name Helicone's jawn server expects in a log's `provider` field.

    NOTE: names outside `HELICONE_PROVIDER_NAMES` are sent upper-cased; Helicone may not know them
    and then computes no cost. Gateways such as Portkey speak the OpenAI format, so use "openai".
    """
    if provider is None:
        return "OPENAI"
    return HELICONE_PROVIDER_NAMES.get(provider, provider.upper())


def header_value(text: str) -> str:
    """Make `text` safe as an HTTP header value, which is how Helicone reads every meta value.

    Helicone builds a fetch `Headers` object from the meta keys, and that rejects characters above
    U+00FF, so everything outside printable ASCII (and `%` itself) is percent-encoded as UTF-8.
    """
    if text.isascii() and "%" not in text:
        return text
    return quote(text, safe=_SAFE_ASCII)


@dataclass(frozen=True, slots=True)
class Metadata:
    """Values that describe a request for Helicone: who asked, which model, which session."""

    model: str | None = None
    provider: str | None = None
    user: str | None = None
    session_id: str | None = None
    session_path: str | None = None
    session_name: str | None = None
    properties: Mapping[str, str] = field(default_factory=lambda: _EMPTY_PROPERTIES)
    virtual_key: str | None = None
    name: str | None = None

    def merged(self, inner: Metadata) -> Metadata:
        """Return this metadata overridden by `inner`'s set fields; properties merge by key."""
        if inner is EMPTY:
            return self
        if self is EMPTY:
            return inner
        properties = self.properties
        if inner.properties:
            properties = MappingProxyType({**self.properties, **inner.properties})
        return Metadata(
            model=inner.model if inner.model is not None else self.model,
            provider=inner.provider if inner.provider is not None else self.provider,
            user=inner.user if inner.user is not None else self.user,
            session_id=inner.session_id if inner.session_id is not None else self.session_id,
            session_path=inner.session_path
            if inner.session_path is not None
            else self.session_path,
            session_name=inner.session_name
            if inner.session_name is not None
            else self.session_name,
            properties=properties,
            virtual_key=inner.virtual_key if inner.virtual_key is not None else self.virtual_key,
            name=inner.name if inner.name is not None else self.name,
        )

    def as_dict(self) -> dict[str, object]:
        """Return the set fields as a plain dict (properties as a dict), for logs and tests."""
        result: dict[str, object] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "properties":
                if value:
                    result["properties"] = dict(value)
            elif value is not None:
                result[item.name] = value
        return result

    def meta(self) -> dict[str, str]:
        """Return the Helicone meta keys for this metadata (without `Helicone-Request-Id`)."""
        meta: dict[str, str] = {}
        if self.user is not None:
            meta["Helicone-User-Id"] = header_value(self.user)
        if self.session_id is not None:
            meta["Helicone-Session-Id"] = header_value(self.session_id)
        if self.session_path is not None:
            meta["Helicone-Session-Path"] = header_value(self.session_path)
        if self.session_name is not None:
            meta["Helicone-Session-Name"] = header_value(self.session_name)
        if self.virtual_key is not None:
            meta["Helicone-Property-Virtual-Key"] = header_value(self.virtual_key)
        if self.name is not None:
            meta["Helicone-Property-Span-Name"] = header_value(self.name)
        for key, value in self.properties.items():
            meta[f"Helicone-Property-{key}"] = header_value(value)
        return meta


EMPTY: Final = Metadata()


def check_text(option: str, value: object) -> str:
    """Check one text option and return it; ints are accepted and converted (user ids often are)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise MetadataError(f"Invalid {option}={value!r} ({type(value).__name__}): pass a string.")
    if _CONTROL.search(value):
        raise MetadataError(
            f"Invalid {option}={value!r}: it contains a control character such as a line break, "
            "which cannot travel in an HTTP header. Remove it."
        )
    return value


def check_property(name: object, value: object) -> tuple[str, str]:
    """Check one custom property and return it as (name, text)."""
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise MetadataError(
            f"Invalid property name {name!r}: it becomes the header Helicone-Property-<name>, so "
            "use letters, digits and - _ . only (for example 'App-Version')."
        )
    if isinstance(value, bool):
        return name, "true" if value else "false"
    if isinstance(value, (int, float)):
        return name, repr(value)
    if not isinstance(value, str):
        raise MetadataError(
            f"Invalid value for property {name!r}: {type(value).__name__} is not supported. "
            "Pass a string, number or bool."
        )
    return name, check_text(f"properties[{name!r}]", value)


def check_provider(value: object) -> str:
    text = check_text("provider", value).strip().lower()
    if not _PROVIDER.match(text):
        raise MetadataError(
            f"Invalid provider={value!r}: use a provider name such as 'openai', 'anthropic' "
            "or 'azure'."
        )
    if text not in HELICONE_PROVIDER_NAMES:
        # Not an error: Helicone may know providers added after this list was written.
        warning_limited(
            f"provider:{text}",
            "heliconetrace does not know this provider; Helicone may compute no cost for it",
            provider=text,
            known=", ".join(HELICONE_PROVIDER_NAMES),
            fix="check the spelling, or use 'openai' for OpenAI-compatible gateways",
        )
    return text


def check_session_path(value: object) -> str:
    text = check_text("session_path", value)
    if not text.startswith("/"):
        raise MetadataError(
            f"Invalid session_path={value!r}: a session path starts with '/', "
            f"for example '/{text}' or '/outline/lesson-1'."
        )
    return text


def metadata_from_options(options: Mapping[str, object]) -> Metadata:
    """Build `Metadata` from keyword options, raising `MetadataError` on the first invalid one.

    None means "not set here", so an outer scope's value shows through.
    """
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise MetadataError(
            f"Unknown option {unknown[0]!r}; valid options are: {', '.join(OPTION_NAMES)}."
        )

    values: dict[str, object] = {}
    for option, value in options.items():
        if value is None:
            continue
        if option == "properties":
            if not isinstance(value, Mapping):
                raise MetadataError(
                    f"Invalid properties={value!r}: pass a mapping of names to values, "
                    "for example properties={'App-Version': '1.2'}."
                )
            checked = dict(check_property(name, item) for name, item in value.items())
            values[option] = MappingProxyType(checked)
        elif option == "provider":
            values[option] = check_provider(value)
        elif option == "session_path":
            values[option] = check_session_path(value)
        else:
            values[option] = check_text(option, value)

    if not values:
        return EMPTY
    return Metadata(**values)  # type: ignore[arg-type]
