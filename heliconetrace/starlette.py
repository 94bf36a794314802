"""ASGI middleware that binds Helicone metadata from request headers for each request.

Add it to a Starlette or FastAPI app, naming the headers your clients or gateway send::

    from heliconetrace.starlette import HeliconeContextMiddleware

    app.add_middleware(
        HeliconeContextMiddleware,
        user_header="x-user-id",
        session_id_header="x-session-id",
        session_name_header="x-session-name",
        property_headers={"x-tenant": "Tenant"},
    )

Every span opened while the request is handled carries those values. That includes spans in
sync endpoints and dependencies, which Starlette runs in a worker thread on a copy of the
request's context, and a decorated async generator fed to a `StreamingResponse`.

The middleware is plain ASGI and imports nothing from Starlette, so it works with any ASGI
framework.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, Final

from heliconetrace._context import Binding
from heliconetrace._diagnostics import warning_limited
from heliconetrace._errors import MetadataError
from heliconetrace._metadata import EMPTY, Metadata, check_property, metadata_from_options

# The ASGI types, spelled as in the ASGI specification and as Starlette spells them.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Scope types that carry request headers; "lifespan" has none and passes through untouched.
_SCOPES_WITH_HEADERS: Final = frozenset({"http", "websocket"})
# A MetadataError message quotes the value; a header may be kilobytes long.
_MAX_ERROR_LENGTH: Final = 200


def _header_key(argument: str, header: object) -> bytes:
    if not isinstance(header, str) or not header.strip():
        raise TypeError(
            f"{argument}={header!r} is not a header name; pass one such as 'x-user-id'."
        )
    # ASGI servers pass header names in lower case, as bytes.
    return header.strip().lower().encode("latin-1")


class HeliconeContextMiddleware:
    """Bind user, session and properties from request headers while each request is handled.

    Each argument names the request header to read (case-insensitive). `property_headers` maps
    header names to Helicone property names: `{"x-tenant": "Tenant"}` sends the X-Tenant header's
    value as `Helicone-Property-Tenant`. A header that is missing or empty binds nothing. A
    value that is not valid metadata (a `session_path` not starting with "/", for example) is
    skipped, logged as a rate-limited warning, and the request goes on.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        user_header: str | None = None,
        session_id_header: str | None = None,
        session_path_header: str | None = None,
        session_name_header: str | None = None,
        property_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        # Header name -> (option, property name or None), in the order the arguments are listed.
        self._targets: dict[bytes, list[tuple[str, str | None]]] = {}
        options = {
            "user": ("user_header", user_header),
            "session_id": ("session_id_header", session_id_header),
            "session_path": ("session_path_header", session_path_header),
            "session_name": ("session_name_header", session_name_header),
        }
        for option, (argument, header) in options.items():
            if header is not None:
                self._add_target(_header_key(argument, header), option, None)
        for header, property_name in (property_headers or {}).items():
            # Checked now, so that a bad property name fails at startup, not on each request.
            check_property(property_name, "")
            self._add_target(_header_key("property_headers", header), "properties", property_name)
        if not self._targets:
            raise TypeError(
                "HeliconeContextMiddleware reads no header: pass at least one of user_header, "
                "session_id_header, session_path_header, session_name_header or property_headers."
            )

    def _add_target(self, key: bytes, option: str, property_name: str | None) -> None:
        self._targets.setdefault(key, []).append((option, property_name))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in _SCOPES_WITH_HEADERS:
            await self.app(scope, receive, send)
            return
        metadata = self._metadata_from(scope.get("headers") or ())
        if metadata is EMPTY:
            await self.app(scope, receive, send)
            return
        # The request runs in this coroutine's context, so the binding covers everything the
        # app does for it, and the `with` block undoes it for the next request on this task.
        with Binding(metadata):
            await self.app(scope, receive, send)

    def _metadata_from(self, headers: Iterable[tuple[bytes, bytes]]) -> Metadata:
        """Build the metadata from the first non-empty value of each wanted header."""
        metadata = EMPTY
        seen: set[bytes] = set()
        for name, raw_value in headers:
            targets = self._targets.get(name)
            if targets is None or name in seen:
                continue
            # ASGI passes raw bytes. Clients send non-ASCII values as UTF-8 in practice; bytes
            # that are not UTF-8 fall back to Latin-1, one character per byte, as Starlette reads.
            try:
                value = raw_value.decode("utf-8").strip()
            except UnicodeDecodeError:
                value = raw_value.decode("latin-1").strip()
            if not value:
                continue
            seen.add(name)
            for option, property_name in targets:
                metadata = metadata.merged(self._checked(name, option, property_name, value))
        return metadata

    def _checked(
        self, header: bytes, option: str, property_name: str | None, value: str
    ) -> Metadata:
        option_value: object = value if property_name is None else {property_name: value}
        try:
            return metadata_from_options({option: option_value})
        except MetadataError as error:
            header_name = header.decode("latin-1")
            warning_limited(
                f"middleware-header:{header_name}",
                "heliconetrace ignored a request header that is not valid Helicone metadata",
                header=header_name,
                error=str(error)[:_MAX_ERROR_LENGTH],
            )
            return EMPTY
