"""Serve recorded OpenAI chat-completion responses on 127.0.0.1, for examples and tests.

The server speaks enough of the OpenAI HTTP API for the ``openai`` SDK to work against it:

- ``POST /v1/chat/completions`` replays a recorded response. With ``"stream": true`` in the
  request body, it sends a recorded ``.sse`` file as ``text/event-stream``, one event per HTTP
  chunk with a flush after each, so the client really streams. Otherwise it sends a recorded
  ``.response.json``. The request's ``stream_options`` are ignored: the recorded bytes are sent
  unchanged, whether or not they end with a usage chunk.
- ``GET /v1/models`` lists the model names below.

The request's ``model`` picks the recording, from the files in ``examples/fixtures/``:

- ``"replay-401"``: ``openai-401.error.json`` with status 401 (invalid API key);
- ``"replay-429"``: ``openai-insufficient-quota.error.json`` with status 429;
- ``"replay:<file name>"``: that fixture file, for example
  ``"replay:openai-chat-stream-content.sse"`` for a stream without usage;
- any other model: ``portkey-chat.response.json``, or ``openai-chat-stream-content-usage.sse``
  for a stream.

The recordings come from real provider traffic, and ``examples/fixtures/PROVENANCE.md`` gives
the source of each file. Headers that OpenAI sends (``x-request-id``, ``openai-processing-ms``,
``x-ratelimit-remaining-requests``) are added with made-up values, because the recordings hold
no headers.

Run it with ``python examples/replay_server.py --port 8100`` and point a client at the printed
URL, for example ``OpenAI(base_url="http://127.0.0.1:8100/v1", api_key="sk-replay-not-a-secret")``.
Any API key is accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"

DEFAULT_RESPONSE = "portkey-chat.response.json"
DEFAULT_STREAM = "openai-chat-stream-content-usage.sse"
OVERRIDE_PREFIX = "replay:"
ERROR_MODELS = {
    "replay-401": "openai-401.error.json",
    "replay-429": "openai-insufficient-quota.error.json",
}
# The recordings keep no status line, so the statuses come from OpenAI's documentation:
# an invalid key is 401, and insufficient_quota is sent as 429.
ERROR_STATUS = {
    "openai-401.error.json": 401,
    "openai-insufficient-quota.error.json": 429,
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    replay: ReplayServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def handle(self) -> None:
        # A client may reset a kept-alive connection instead of closing it, or stop reading a
        # stream half-way. Either only ends this connection.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep request lines off stderr, unless the server was started with verbose=True."""
        if self.server.replay.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/v1/models":
            self.send_json(200, _model_list())
        else:
            self.send_not_found()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length)
        if self.path.split("?", 1)[0] != "/v1/chat/completions":
            self.send_not_found()
            return
        try:
            request = json.loads(raw_body)
        except ValueError:
            self.send_json(400, _error("The request body is not valid JSON.", "invalid_json"))
            return
        if not isinstance(request, dict):
            self.send_json(400, _error("The request body must be a JSON object.", "invalid_json"))
            return

        model = request.get("model")
        name = _fixture_name(model, stream=request.get("stream") is True)
        path = FIXTURES / name
        if not path.is_file():
            message = f"The model {model!r} names no fixture: {path} does not exist."
            self.send_json(404, _error(message, "model_not_found", param="model"))
            return

        content = path.read_bytes()
        if name.endswith(".sse"):
            self.send_stream(content)
        else:
            self.send_bytes(ERROR_STATUS.get(name, 200), content, "application/json")

    def send_not_found(self) -> None:
        message = f"Unknown request URL: {self.command} {self.path}."
        self.send_json(404, _error(message, "unknown_url"))

    def send_json(self, status: int, payload: object) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), "application/json")

    def send_bytes(self, status: int, content: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_provider_headers(content_type)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def send_stream(self, content: bytes) -> None:
        """Send an SSE recording with chunked encoding, one event per chunk."""
        self.send_response(200)
        self.send_provider_headers("text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for event in _split_events(content):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            if self.server.replay.chunk_delay:
                time.sleep(self.server.replay.chunk_delay)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def send_provider_headers(self, content_type: str) -> None:
        self.send_header("Content-Type", content_type)
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        self.send_header("openai-processing-ms", "42")
        self.send_header("x-ratelimit-remaining-requests", "9999")


def _fixture_name(model: object, *, stream: bool) -> str:
    if isinstance(model, str) and model.startswith(OVERRIDE_PREFIX):
        # Path(...).name drops any directory part, so a model name cannot leave FIXTURES.
        return Path(model[len(OVERRIDE_PREFIX) :]).name
    if isinstance(model, str) and model in ERROR_MODELS:
        return ERROR_MODELS[model]
    return DEFAULT_STREAM if stream else DEFAULT_RESPONSE


def _split_events(content: bytes) -> list[bytes]:
    """Split an SSE body after each blank line, keeping every byte."""
    events = [event + b"\n\n" for event in content.split(b"\n\n")]
    events[-1] = events[-1][:-2]
    return [event for event in events if event]


def _error(message: str, code: str, param: str | None = None) -> dict[str, Any]:
    """Build an error body shaped like OpenAI's."""
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


def _model_list() -> dict[str, Any]:
    names = ["replay-default", *ERROR_MODELS]
    names += sorted(OVERRIDE_PREFIX + path.name for path in FIXTURES.glob("*.*.json"))
    names += sorted(OVERRIDE_PREFIX + path.name for path in FIXTURES.glob("*.sse"))
    models = [{"id": name, "object": "model", "created": 0, "owned_by": "replay"} for name in names]
    return {"object": "list", "data": models}


class ReplayServer:
    """An OpenAI-compatible HTTP server that replays recorded responses."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        chunk_delay: float = 0.0,
        verbose: bool = False,
    ) -> None:
        """Prepare a server that listens once started. Port 0 picks a free port.

        `chunk_delay` is the pause, in seconds, after each streamed event. With `verbose`, each
        request is logged to stderr in http.server's format.
        """
        self.host = host
        self.port = port
        self.chunk_delay = chunk_delay
        self.verbose = verbose
        self.url = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ReplayServer:
        """Start serving in a daemon thread and set `url`, which ends in ``/v1``."""
        if self._server is not None:
            raise RuntimeError("replay server already started")
        self._server = _Server((self.host, self.port), _Handler)
        self._server.replay = self
        self.url = f"http://{self.host}:{self._server.server_port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="replay-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join(timeout=1.0)
        self._server = None
        self._thread = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the server until interrupted."""
    parser = argparse.ArgumentParser(
        description="Serve recorded OpenAI chat-completion responses on 127.0.0.1."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on (0 picks a free one)"
    )
    parser.add_argument(
        "--chunk-delay",
        type=float,
        default=0.0,
        help="pause after each streamed event, in seconds",
    )
    args = parser.parse_args(argv)

    server = ReplayServer(args.host, args.port, chunk_delay=args.chunk_delay, verbose=True)
    server.start()
    print(f"Replaying {FIXTURES} at {server.url}; press Ctrl-C to stop.", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
