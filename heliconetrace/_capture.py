"""Turn what a handler received, returned or raised into JSON for the record.

The default request rule: the first positional argument, then the first keyword argument, that is
a mapping holding a "model" key or a pydantic model with a "model" field. Failing that, a handler
called the way the openai and anthropic SDK methods are (`model=..., messages=...`) has its
keyword arguments as the request, as `find_request` details. Handlers whose request looks
different name the argument (`request_arg=`) or pass a function (`request_extractor=`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Final

import pydantic_core
from pydantic import BaseModel

from heliconetrace._redact import is_secret_header, redact_text

# Status for a failure that carries no HTTP status of its own.
DEFAULT_ERROR_STATUS: Final = 500
# Helicone's code for a request the client cancelled (a stream closed early, a task cancelled).
CANCELLED_STATUS: Final = -3

RequestExtractor = Callable[..., Any]

# Keyword arguments that, next to a string `model`, mark a call made the SDK way:
# chat (`messages`), responses (`input`), completions (`prompt`) and anthropic (`max_tokens`).
SDK_REQUEST_MARKERS: Final = frozenset({"messages", "input", "prompt", "max_tokens"})
# Keyword arguments of the SDK methods (and of clients) that configure the HTTP call and are not
# part of the request body. `extra_body` is merged into the body, as the SDKs do.
SDK_CALL_OPTIONS: Final = frozenset(
    {
        "extra_headers",
        "extra_query",
        "extra_body",
        "timeout",
        "betas",
        "client",
        "http_client",
        "base_url",
        "default_headers",
        "default_query",
        "organization",
        "project",
        "max_retries",
    }
)
# Value types a request field may have. Values of other types are left out of the request: a
# client, an SDK sentinel such as NOT_GIVEN, or a class passed as response_format.
_JSON_FIELD_TYPES: Final = (str, int, float, bool, list, tuple, Mapping, BaseModel)


# Types that are never a request, checked first because the Mapping and BaseModel checks below
# cost several times more, and handlers are often called with strings and lists.
_PLAIN_TYPES: Final = frozenset({str, int, float, bool, list, tuple, bytes, type(None)})


def is_request_like(value: object) -> bool:
    if type(value) in _PLAIN_TYPES:
        return False
    # dict first in the tuple: the common case, and cheaper than the Mapping ABC check.
    if isinstance(value, (dict, Mapping)):
        return "model" in value
    if isinstance(value, BaseModel):
        return "model" in type(value).model_fields
    return False


def find_request(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> object | None:
    """Apply the default request rule to a call's arguments.

    1. The first argument, positional then keyword, that is a mapping with a "model" key or a
       pydantic model with a `model` field.
    2. Otherwise, for a call made the SDK way, with a string `model=` and one of `messages=`,
       `input=`, `prompt=` or `max_tokens=`: a dict of the keyword arguments that are request
       fields. Call options (`extra_headers`, `timeout`, `client`, ... in `SDK_CALL_OPTIONS`),
       names that look like credentials (`api_key`) and values that are not JSON-like (a client
       object, an SDK sentinel such as NOT_GIVEN) are left out. `extra_body` is merged in.
    3. Otherwise None: the record has an empty request.

    It runs on the caller's thread for every call, so it only looks at types and keys.
    """
    for value in (*args, *kwargs.values()):
        if is_request_like(value):
            found: object = value
            return found
    if isinstance(kwargs.get("model"), str) and not SDK_REQUEST_MARKERS.isdisjoint(kwargs):
        return keyword_request(kwargs)
    return None


def keyword_request(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Return the request fields among SDK-style keyword arguments (rule 2 of `find_request`)."""
    request = {name: value for name, value in kwargs.items() if is_request_field(name, value)}
    extra_body = kwargs.get("extra_body")
    if isinstance(extra_body, Mapping):
        for name, value in extra_body.items():
            if isinstance(name, str) and is_request_field(name, value):
                request[name] = value
    return request


def is_request_field(name: str, value: object) -> bool:
    if not is_request_field_name(name):
        return False
    return value is None or isinstance(value, _JSON_FIELD_TYPES)


@functools.lru_cache(maxsize=512)
def is_request_field_name(name: str) -> bool:
    """Return whether a keyword may be a request field; cached, because handlers repeat them."""
    return name not in SDK_CALL_OPTIONS and not is_secret_header(name)


class ArgumentPicker:
    """Pick one named argument out of a call, finding its position once at decoration time."""

    __slots__ = ("_default", "_name", "_position")

    def __init__(self, function: Callable[..., Any], name: str) -> None:
        parameters = inspect.signature(function).parameters
        if name not in parameters:
            raise TypeError(
                f"request_arg={name!r} is not a parameter of {function.__qualname__}; "
                f"its parameters are: {', '.join(parameters)}."
            )
        parameter = parameters[name]
        self._name = name
        self._position: int | None = None
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            self._position = list(parameters).index(name)
        self._default = None if parameter.default is parameter.empty else parameter.default

    def __call__(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> object | None:
        value: object = self._default
        if self._name in kwargs:
            value = kwargs[self._name]
        elif self._position is not None and self._position < len(args):
            value = args[self._position]
        return value


def to_json_object(value: object) -> dict[str, Any] | None:
    """Return `value` as a JSON object (dict), or None when it is not object-shaped.

    The openai and anthropic SDK models are dumped with their own `to_dict()`, which keeps exactly
    the fields the provider sent. Other pydantic models use `model_dump(mode="json")`.
    """
    if isinstance(value, dict):
        return value
    if isinstance(value, Mapping):
        return dict(value)
    module = type(value).__module__
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and module.startswith(("openai.", "anthropic.")):
        result = to_dict()
        return result if isinstance(result, dict) else None
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        result = model_dump(mode="json")
        return result if isinstance(result, dict) else None
    return None


def snapshot_json(value: object) -> bytes | None:
    """Serialize an object-shaped value to JSON bytes now, or return None when it is not one.

    This freezes what is logged at the moment a span ends, so a caller that changes a returned
    dict afterwards does not change the record. It runs on the caller's thread, so it stays in
    pydantic-core's compiled serializer for dicts and pydantic models.
    """
    if isinstance(value, dict):
        return pydantic_core.to_json(value, fallback=json_fallback)
    if isinstance(value, BaseModel):
        # The openai and anthropic SDKs leave unset the fields the provider did not send.
        # Leaving those out keeps the body as the provider sent it.
        is_sdk_object = type(value).__module__.startswith(("openai.", "anthropic."))
        return type(value).__pydantic_serializer__.to_json(
            value, exclude_unset=is_sdk_object, fallback=json_fallback
        )
    as_object = to_json_object(value)
    if as_object is None:
        return None
    return pydantic_core.to_json(as_object, fallback=json_fallback)


def json_fallback(value: Any) -> Any:
    """Serialize what the JSON encoder cannot, without ever writing an object's `str()`."""
    as_object = to_json_object(value)
    if as_object is not None:
        return as_object
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return f"<{type(value).__qualname__} not serializable>"


def exception_status(error: BaseException) -> int:
    """Return the HTTP status an exception carries, or 500.

    Reads `status_code` (openai and anthropic status errors, Starlette's HTTPException),
    `response.status_code` (httpx.HTTPStatusError) and `status` (aiohttp).
    """
    candidates = (
        getattr(error, "status_code", None),
        getattr(getattr(error, "response", None), "status_code", None),
        getattr(error, "status", None),
    )
    for candidate in candidates:
        if isinstance(candidate, bool) or not isinstance(candidate, int):
            continue
        if 100 <= candidate <= 599:
            return candidate
    return DEFAULT_ERROR_STATUS


def error_body(error: BaseException, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """Return the JSON body to log for a failed call.

    An SDK status error keeps the provider's own error body (`body`, already parsed). Any other
    exception becomes {"error": {"message", "type"}}, with secrets masked in the message.
    """
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        provider_body: dict[str, Any] = body if "error" in body else {"error": body}
        redacted: dict[str, Any] = redacted_copy(provider_body, secrets)
        return redacted
    return {
        "error": {
            "message": redact_text(str(error), secrets),
            "type": type(error).__name__,
        }
    }


def redacted_copy(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, dict):
        return {key: redacted_copy(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [redacted_copy(item, secrets) for item in value]
    return value
