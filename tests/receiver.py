"""A local HTTP server that plays Helicone's log endpoints, for tests.

`HeliconeReceiver` listens on 127.0.0.1 and responds like one of Helicone's two servers:

- ``kind="worker"``: the Cloudflare worker behind ``api.worker.helicone.ai``. It serves
  ``/custom/v1/log``, ``/oai/v1/log`` and ``/anthropic/v1/log``, and returns
  ``400 invalid path`` for any other path. It checks, in the worker's order: body size (over
  10 MiB gives ``400 Payload too large``), that an ``Authorization`` header exists (else
  ``401 Unauthorized`` as text), the body, then the key (else ``401 {"error": ...}``). Success
  is ``200 ok`` with a ``helicone-id`` header. Like the worker, it reads a body that is not
  JSON as ``{}``.
- ``kind="jawn"``: the Express API server (``api.helicone.ai``, self-hosted on port 8585). It
  serves ``/v1/trace/custom/log`` and ``/v1/trace/custom/v1/log``, and returns 404 for any
  other path. Auth errors carry jawn's JSON bodies, a body over 50 MB gets 413, and success is
  ``200`` with an empty body. A log authenticated only by a ``helicone-authorization`` header
  gets 200 but is not stored, as on real jawn. Real jawn does not validate these bodies. This
  receiver does, because heliconetrace promises a body that both servers accept.

Both kinds check each body with `validate_worker_body`. A body that fails gets the response
``400 {"error": "<first violation>"}`` and is kept in `HeliconeReceiver.rejected`, so a test
can assert that list is empty. Accepted bodies are kept in `HeliconeReceiver.records`.

`HeliconeReceiver.mode` makes the receiver fail on purpose; see `MODES`. Even then, each body
that reaches a log path is validated and an invalid one is added to ``rejected``.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

from tests.helicone_schema import validate_worker_body

WORKER_PATHS = frozenset({"/custom/v1/log", "/oai/v1/log", "/anthropic/v1/log"})
JAWN_PATHS = frozenset({"/v1/trace/custom/log", "/v1/trace/custom/v1/log"})

# The worker measures the length of JSON.stringify(body), and this receiver the raw length.
# Jawn's express.json parser has the limit "50mb", which body-parser reads as 50 * 1024 * 1024.
WORKER_MAX_BODY = 10 * 1024 * 1024
JAWN_MAX_BODY = 50 * 1024 * 1024

MODES = {
    "ok": "respond as the real server does",
    "error-200": 'respond 200 {"error": ...}, as the worker does when storing the log fails',
    "401": "respond 401, as for a wrong key",
    "403": 'respond 403 {"error": ...}, as for a key without access',
    "404": "respond 404, as for a wrong base URL",
    "429": 'respond 429 {"error": ...} with a Retry-After header (`retry_after`, default "1")',
    "500": "respond 500 with an empty body",
    "slow": "wait `delay` seconds, then respond as in mode ok",
    "hang": "never respond, and close the connection when the receiver stops",
    "reset": "read the request, then reset the connection (TCP RST) without responding",
    "413": "respond 413, as a proxy in front of Helicone does above its body size limit",
}

Mode = Literal["ok", "error-200", "401", "403", "404", "429", "500", "slow", "hang", "reset", "413"]

# Helicone replaces a Helicone-Request-Id that is not a UUID of version 1 to 5 with a random one.
_UUID_PATTERN = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.IGNORECASE
)
_DROPPED_HELICONE_AUTHORIZATION = (
    "stored nothing: jawn accepted the helicone-authorization header, but it authenticates "
    "the log a second time from the Authorization header, which is missing"
)


@dataclass
class ReceivedRequest:
    """One HTTP request as the receiver read it, with the status of its response (None if none).

    Requests sent over one kept-alive connection share `client_port`.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int
    status: int | None = None

    def json(self) -> Any:
        """Parse the body as JSON."""
        return json.loads(self.body)


@dataclass
class RejectedBody:
    """A body that failed validation, was too large, or was accepted and then dropped."""

    path: str
    body: object
    errors: list[str]


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(MODES)}")


def _text(status: int, text: str) -> _Response:
    return _Response(status, text.encode(), {"Content-Type": "text/plain;charset=UTF-8"})


def _json(status: int, payload: object) -> _Response:
    return _Response(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: HeliconeReceiver


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the second waits for
    # the client's delayed ACK, about 40 ms per request.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.receiver._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.receiver._untrack(self.connection)

    def handle(self) -> None:
        # A client may reset a kept-alive connection instead of closing it, and stop() shuts
        # down open sockets. Either only ends this connection.
        with contextlib.suppress(OSError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep request lines off stderr, because tests read `HeliconeReceiver.requests` instead."""

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def handle_any(self) -> None:
        self.server.receiver._serve(self)

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = handle_any


class HeliconeReceiver:
    """Play Helicone's async log API on 127.0.0.1 and keep every request it receives."""

    def __init__(
        self,
        *,
        api_key: str = "sk-helicone-test-key",
        kind: Literal["worker", "jawn"] = "worker",
    ) -> None:
        if kind not in ("worker", "jawn"):
            raise ValueError(f"kind must be 'worker' or 'jawn', not {kind!r}")
        self.api_key = api_key
        self.kind = kind
        self._mode: Mode = "ok"
        self.delay = 2.0
        self.retry_after = "1"
        self.url = ""
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._records: list[dict[str, Any]] = []
        self._rejected: list[RejectedBody] = []
        self._requests: list[ReceivedRequest] = []
        self._next_modes: list[Mode] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self, port: int = 0) -> HeliconeReceiver:
        """Start serving on `port` of 127.0.0.1 (0: a free one) and set `url`.

        After `stop()`, `start(port)` with the earlier port serves again at the same URL.
        """
        if self._server is not None:
            raise RuntimeError("receiver already started")
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.receiver = self
        port = self._server.server_port
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"helicone-receiver-{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection, hanging ones included."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        thread.join(timeout=1.0)
        self._server = None
        self._thread = None

    def __enter__(self) -> HeliconeReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # What arrived

    @property
    def records(self) -> list[dict[str, Any]]:
        """Accepted bodies, in arrival order (a copy)."""
        with self._lock:
            return list(self._records)

    @property
    def rejected(self) -> list[RejectedBody]:
        """Bodies rejected or dropped, in arrival order (a copy)."""
        with self._lock:
            return list(self._rejected)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received, in arrival order (a copy of the list)."""
        with self._lock:
            return list(self._requests)

    @property
    def mode(self) -> Mode:
        """The failure mode for requests that no queued mode covers; see `MODES`."""
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        _check_mode(mode)
        self._mode = mode

    def queue_modes(self, *modes: Mode) -> None:
        """Use these modes for the next requests, one each, then return to `mode`."""
        for mode in modes:
            _check_mode(mode)
        with self._lock:
            self._next_modes.extend(modes)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until `count` bodies are accepted and return them all.

        Raises AssertionError listing what did arrive if `timeout` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._records) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(self._describe_shortfall(count, timeout))
                self._arrived.wait(remaining)
            return list(self._records)

    def _describe_shortfall(self, count: int, timeout: float) -> str:
        """Describe what did arrive; the caller holds the lock."""
        seen = [f"{r.method} {r.path} -> {r.status}" for r in self._requests]
        return (
            f"expected {count} accepted record(s) within {timeout}s, got {len(self._records)}.\n"
            f"requests: {seen}\nrejected: {self._rejected}\nrecords: {self._records}"
        )

    # Request handling, called on the server's threads

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _serve(self, handler: _Handler) -> None:
        body = handler.read_body()
        path = handler.path.split("?", 1)[0]
        request = ReceivedRequest(
            method=handler.command,
            path=path,
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=body,
            client_port=handler.client_address[1],
        )
        with self._lock:
            self._requests.append(request)
            mode = self._next_modes.pop(0) if self._next_modes else self._mode

        if mode == "slow":
            self._stopping.wait(self.delay)
        if mode == "hang" or self._stopping.is_set():
            self._check_quietly(request)
            self._stopping.wait()
            handler.close_connection = True
            return
        if mode == "reset":
            self._check_quietly(request)
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.close_connection = True
            return

        response = self._respond(request, mode)
        request.status = response.status
        handler.send_response(response.status)
        for name, value in response.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(response.body)))
        handler.end_headers()
        handler.wfile.write(response.body)
        handler.wfile.flush()

    def _respond(self, request: ReceivedRequest, mode: Mode) -> _Response:
        if request.method != "POST" or not self._is_log_path(request.path):
            if self.kind == "worker":
                return _text(400, "invalid path")
            return _text(404, f"Cannot {request.method} {request.path}")

        if mode in ("ok", "slow"):
            if self.kind == "worker":
                return self._respond_as_worker(request)
            return self._respond_as_jawn(request)

        self._check_quietly(request)
        if mode == "error-200":
            return _json(200, {"error": "failed to store the log (receiver mode error-200)"})
        if mode == "401":
            return self._wrong_key(request.headers.get("authorization", ""))
        if mode == "404":
            return _text(404, f"Cannot {request.method} {request.path}")
        if mode == "403":
            return _json(403, {"error": "Forbidden (receiver mode 403)"})
        if mode == "413":
            return _text(413, "request entity too large")
        if mode == "429":
            response = _json(429, {"error": "Too many requests (receiver mode 429)"})
            response.headers["Retry-After"] = self.retry_after
            return response
        # Only mode 500 is left: hang returned earlier, and the setters admit no other mode.
        return _Response(500)

    def _is_log_path(self, path: str) -> bool:
        return path in (WORKER_PATHS if self.kind == "worker" else JAWN_PATHS)

    def _respond_as_worker(self, request: ReceivedRequest) -> _Response:
        if len(request.body) > WORKER_MAX_BODY:
            self._reject(request.path, request.body, ["Payload too large"])
            return _text(400, "Payload too large")
        authorization = request.headers.get("authorization")
        if not authorization:
            return _text(401, "Unauthorized")

        try:
            body = json.loads(request.body)
        except ValueError:
            body = {}  # The worker's getJson() returns {} for a body it cannot parse.
        errors = validate_worker_body(body)
        if errors:
            self._reject(request.path, body, errors)
            return _json(400, {"error": errors[0]})

        # The worker's auth() reads helicone-auth first and falls back to Authorization.
        key_header = request.headers.get("helicone-auth") or authorization
        if key_header != f"Bearer {self.api_key}":
            return self._wrong_key(key_header)

        self._accept(body)
        return _Response(200, b"ok", {"helicone-id": self._request_id(request, body)})

    def _respond_as_jawn(self, request: ReceivedRequest) -> _Response:
        authorization = request.headers.get("authorization")
        auth_object = request.headers.get("helicone-authorization")
        stored = True
        if authorization:
            if not self._key_matches(authorization):
                return self._wrong_key(authorization)
        elif auth_object:
            try:
                parsed = json.loads(auth_object)
            except ValueError:
                return _json(401, {"error": "Invalid auth header"})
            if not self._is_valid_auth_object(parsed):
                return _json(401, {"error": "Invalid auth header format"})
            if not self._key_matches(parsed["token"]):
                return self._wrong_key(parsed["token"])
            stored = False
        else:
            return _json(401, {"error": "No authorization header"})

        if len(request.body) > JAWN_MAX_BODY:
            self._reject(request.path, request.body, ["request entity too large"])
            return _text(413, "request entity too large")
        try:
            body = json.loads(request.body)
        except ValueError:
            self._reject(request.path, request.body, ["body is not valid JSON"])
            return _text(400, "Bad Request")
        errors = validate_worker_body(body)
        if errors:
            self._reject(request.path, body, errors)
            return _json(400, {"error": errors[0]})

        if stored:
            self._accept(body)
        else:
            self._reject(request.path, body, [_DROPPED_HELICONE_AUTHORIZATION])
        return _Response(200)

    def _key_matches(self, token: str) -> bool:
        """Match jawn's lookup: the token without "Bearer ", then the raw token."""
        return token.removeprefix("Bearer ") == self.api_key or token == self.api_key

    @staticmethod
    def _is_valid_auth_object(parsed: object) -> bool:
        if not isinstance(parsed, dict) or not isinstance(parsed.get("token"), str):
            return False
        if parsed.get("_type") in ("bearer", "bearerProxy"):
            return True
        return parsed.get("_type") == "jwt" and isinstance(parsed.get("orgId"), str)

    def _wrong_key(self, header_value: str) -> _Response:
        if self.kind == "worker":
            # NOTE: the text of the worker's auth() error was not read; this one is made up.
            return _json(401, {"error": "No API key found"})
        # Jawn's middleware echoes the parsed auth header and its Supabase URL.
        auth = {"_bearerType": "heliconeApiKey", "token": header_value, "_type": "bearer"}
        return _json(
            401,
            {
                "error": "No API key found",
                "trace": "isAuthenticated.error",
                "authorizationString": {"data": auth, "error": None},
                "supabaseURL": "http://localhost:54321",
                "pingUrl": "http://localhost:54321",
            },
        )

    @staticmethod
    def _request_id(request: ReceivedRequest, body: dict[str, Any]) -> str:
        """Pick Helicone-Request-Id as the worker does: HTTP header first, then meta."""
        candidates = [request.headers.get("helicone-request-id")]
        meta = body["providerRequest"]["meta"]
        candidates += [value for key, value in meta.items() if key.lower() == "helicone-request-id"]
        for candidate in candidates:
            if isinstance(candidate, str) and _UUID_PATTERN.match(candidate):
                return candidate
        return str(uuid.uuid4())

    def _check_quietly(self, request: ReceivedRequest) -> None:
        """Validate a body that a failure mode responds to unchecked, and keep it if it is invalid."""
        if request.method != "POST" or not self._is_log_path(request.path):
            return
        try:
            body = json.loads(request.body)
        except ValueError:
            self._reject(request.path, request.body, ["body is not valid JSON"])
            return
        errors = validate_worker_body(body)
        if errors:
            self._reject(request.path, body, errors)

    def _accept(self, body: dict[str, Any]) -> None:
        with self._arrived:
            self._records.append(body)
            self._arrived.notify_all()

    def _reject(self, path: str, body: object, errors: list[str]) -> None:
        with self._lock:
            self._rejected.append(RejectedBody(path, body, errors))
