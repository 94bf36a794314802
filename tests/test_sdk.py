"""SDK-style calls and raw SDK responses, through the real openai and anthropic SDKs.

The openai SDK talks to examples/replay_server.py, and the anthropic SDK to a small
Anthropic-compatible server defined here; both listen on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from pydantic import BaseModel

import heliconetrace
from examples.replay_server import FIXTURES as REPLAY_FIXTURES
from examples.replay_server import ReplayServer
from heliconetrace import helicone_logged
from heliconetrace._capture import find_request
from heliconetrace._sdk import provider_for_url, safe_url, unwrap_raw_response
from tests.conftest import TEST_KEY
from tests.helicone_schema import assert_valid_record
from tests.receiver import HeliconeReceiver

PROVIDER_KEY = "sk-provider-secret-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "What's the weather like?"}]
PROVIDER_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "providers"
ANTHROPIC_BODY = (PROVIDER_FIXTURES / "anthropic-messages.response.json").read_bytes()
OPENAI_BODY = json.loads((REPLAY_FIXTURES / "portkey-chat.response.json").read_bytes())


class _AnthropicHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep request lines off stderr."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?", 1)[0] != "/v1/messages":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("request-id", "req_anthropic_0001")
        self.send_header("anthropic-ratelimit-requests-remaining", "49")
        self.send_header("Content-Length", str(len(ANTHROPIC_BODY)))
        self.end_headers()
        self.wfile.write(ANTHROPIC_BODY)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture(scope="module")
def anthropic_url() -> Iterator[str]:
    """Serve the recorded Anthropic Messages response on 127.0.0.1."""
    server = _Server(("127.0.0.1", 0), _AnthropicHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=1.0)


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


@pytest.fixture
def openai_client(replay: ReplayServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=replay.url, api_key=PROVIDER_KEY, max_retries=0) as client:
        yield client


def one_delivery(helicone: HeliconeReceiver) -> tuple[dict[str, Any], bytes]:
    """Return the one record delivered, and its bytes as they were posted."""
    assert heliconetrace.flush(5.0)
    records = helicone.wait_for(1)
    assert len(records) == 1
    assert_valid_record(records[0])
    posted = [request.body for request in helicone.requests if request.method == "POST"]
    return records[0], posted[-1]


class TestKeywordRequest:
    """The default request rule for handlers called the way SDK methods are."""

    def test_messages(self) -> None:
        """`model=` and `messages=` give a request of both."""
        request = find_request((), {"model": "gpt-4o-mini", "messages": MESSAGES})
        assert request == {"model": "gpt-4o-mini", "messages": MESSAGES}

    def test_other_markers(self) -> None:
        """`input=`, `prompt=` and `max_tokens=` each mark an SDK-style call."""
        for marker, value in (("input", "Hi"), ("prompt", "Hi"), ("max_tokens", 16)):
            request = find_request((), {"model": "m", marker: value})
            assert request == {"model": "m", marker: value}, marker

    def test_model_alone(self) -> None:
        """A lone `model=` keyword is no request: a handler may just take a model name."""
        assert find_request((), {"model": "gpt-4o-mini"}) is None

    def test_model_not_string(self) -> None:
        """`model=` must be a string."""
        assert find_request((), {"model": 4, "messages": MESSAGES}) is None

    def test_leaves_out_call_options(self) -> None:
        """Call options, credentials and client objects stay out of the request."""
        request = find_request(
            (),
            {
                "model": "m",
                "messages": MESSAGES,
                "extra_headers": {"x-portkey-api-key": "pk-secret"},
                "extra_query": {"a": "b"},
                "timeout": 5.0,
                "api_key": PROVIDER_KEY,
                "client": openai.OpenAI(api_key=PROVIDER_KEY, base_url="http://127.0.0.1:9"),
                "temperature": openai.NOT_GIVEN,
                "response_format": BaseModel,
            },
        )
        assert request == {"model": "m", "messages": MESSAGES}

    def test_keeps_request_fields(self) -> None:
        """Every JSON-like request field is kept, None and pydantic models included."""

        class Metadata(BaseModel):
            team: str

        fields = {
            "model": "m",
            "messages": MESSAGES,
            "temperature": 0.2,
            "stream": False,
            "stop": ("a", "b"),
            "user": "u-42",
            "seed": None,
            "metadata": Metadata(team="search"),
        }
        assert find_request((), fields) == fields

    def test_merges_extra_body(self) -> None:
        """`extra_body` fields are request fields and override keywords, as in the SDKs."""
        request = find_request(
            (),
            {
                "model": "m",
                "messages": MESSAGES,
                "temperature": 0.2,
                "extra_body": {"top_k": 5, "temperature": 1.0},
            },
        )
        assert request == {"model": "m", "messages": MESSAGES, "temperature": 1.0, "top_k": 5}

    def test_mapping_argument_first(self) -> None:
        """A mapping argument with a model is still preferred to keywords."""
        body = {"model": "from-body", "messages": MESSAGES}
        assert find_request((body,), {"model": "m", "messages": []}) is body

    def test_decorated_handler(self, helicone: HeliconeReceiver) -> None:
        """A decorated handler called SDK-style logs its keyword request without credentials."""

        @helicone_logged
        def create(**kwargs: Any) -> dict[str, Any]:
            return OPENAI_BODY

        create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"Authorization": f"Bearer {PROVIDER_KEY}"},
            api_key=PROVIDER_KEY,
        )
        record, posted = one_delivery(helicone)
        assert record["providerRequest"]["json"] == {"model": "gpt-4o-mini", "messages": MESSAGES}
        assert PROVIDER_KEY.encode() not in posted


class TestOpenAIRawResponse:
    """openai's `with_raw_response` results (`LegacyAPIResponse`)."""

    def test_body(self, helicone: HeliconeReceiver, openai_client: openai.OpenAI) -> None:
        """The record's response is the body the provider sent."""

        @helicone_logged
        def chat(body: dict[str, Any]) -> Any:
            return openai_client.chat.completions.with_raw_response.create(**body)

        chat({"model": "gpt-4o-mini", "messages": MESSAGES})
        record, _ = one_delivery(helicone)
        assert record["providerResponse"]["json"] == OPENAI_BODY

    def test_headers(self, helicone: HeliconeReceiver, openai_client: openai.OpenAI) -> None:
        """The provider's response headers are logged, request id and rate limits included."""

        @helicone_logged
        def chat(body: dict[str, Any]) -> Any:
            return openai_client.chat.completions.with_raw_response.create(**body)

        raw = chat({"model": "gpt-4o-mini", "messages": MESSAGES})
        headers = one_delivery(helicone)[0]["providerResponse"]["headers"]
        assert headers["x-request-id"] == raw.headers["x-request-id"]
        assert headers["openai-processing-ms"] == "42"
        assert headers["x-ratelimit-remaining-requests"] == "9999"

    def test_url_and_status(
        self, helicone: HeliconeReceiver, openai_client: openai.OpenAI, replay: ReplayServer
    ) -> None:
        """The request URL becomes providerRequest.url, and the HTTP status is logged."""

        @helicone_logged
        def chat(body: dict[str, Any]) -> Any:
            return openai_client.chat.completions.with_raw_response.create(**body)

        chat({"model": "gpt-4o-mini", "messages": MESSAGES})
        record = one_delivery(helicone)[0]
        assert record["providerRequest"]["url"] == f"{replay.url}/chat/completions"
        assert record["providerResponse"]["status"] == 200

    def test_no_credentials(self, helicone: HeliconeReceiver, replay: ReplayServer) -> None:
        """The client's API key and Portkey key appear nowhere in the posted record."""
        client = openai.OpenAI(
            base_url=replay.url,
            api_key=PROVIDER_KEY,
            max_retries=0,
            default_headers={"x-portkey-api-key": "pk-portkey-secret-123", "api-key": "azkey-1234"},
        )

        @helicone_logged
        def chat(body: dict[str, Any]) -> Any:
            return client.chat.completions.with_raw_response.create(**body)

        chat({"model": "gpt-4o-mini", "messages": MESSAGES})
        posted = one_delivery(helicone)[1]
        client.close()
        for secret in (PROVIDER_KEY, "pk-portkey-secret-123", "azkey-1234"):
            assert secret.encode() not in posted, secret
        assert b"authorization" not in posted.lower()

    def test_caller_parses(self, helicone: HeliconeReceiver, openai_client: openai.OpenAI) -> None:
        """Logging leaves the SDK's parse cache empty, and the caller's parse() still works."""

        @helicone_logged
        def chat(body: dict[str, Any]) -> Any:
            return openai_client.chat.completions.with_raw_response.create(**body)

        raw = chat({"model": "gpt-4o-mini", "messages": MESSAGES})
        one_delivery(helicone)
        # The SDK caches parse() results here; an entry would mean heliconetrace parsed it.
        assert raw._parsed_by_type == {}
        assert raw.parse().id == OPENAI_BODY["id"]

    def test_async(self, helicone: HeliconeReceiver, replay: ReplayServer) -> None:
        """An async handler's raw response is logged the same way."""

        @helicone_logged
        async def chat(body: dict[str, Any]) -> Any:
            async with openai.AsyncOpenAI(
                base_url=replay.url, api_key=PROVIDER_KEY, max_retries=0
            ) as client:
                return await client.chat.completions.with_raw_response.create(**body)

        asyncio.run(chat({"model": "gpt-4o-mini", "messages": MESSAGES}))
        record = one_delivery(helicone)[0]
        assert record["providerResponse"]["json"] == OPENAI_BODY
        assert record["providerResponse"]["headers"]["openai-processing-ms"] == "42"

    def test_stream_left_unread(
        self, helicone: HeliconeReceiver, openai_client: openai.OpenAI
    ) -> None:
        """A streamed raw response keeps its headers in the record and all its chunks for the
        caller."""

        @helicone_logged
        def chat(body: dict[str, Any]) -> Any:
            return openai_client.chat.completions.with_raw_response.create(**body, stream=True)

        raw = chat({"model": "gpt-4o-mini", "messages": MESSAGES})
        chunks = list(raw.parse())
        record = one_delivery(helicone)[0]
        assert len(chunks) > 1
        assert record["providerResponse"]["headers"]["openai-processing-ms"] == "42"
        assert record["providerResponse"]["json"] == {}

    def test_user_response_wins(
        self, helicone: HeliconeReceiver, openai_client: openai.OpenAI
    ) -> None:
        """A response set with set_response() is kept over the raw response's body."""

        @helicone_logged
        def chat(body: dict[str, Any]) -> Any:
            heliconetrace.current_span().set_response({"answer": "mine"}, status=201)  # type: ignore[union-attr]
            return openai_client.chat.completions.with_raw_response.create(**body)

        chat({"model": "gpt-4o-mini", "messages": MESSAGES})
        response = one_delivery(helicone)[0]["providerResponse"]
        assert response["json"] == {"answer": "mine"}
        assert response["status"] == 201


class TestAnthropicRawResponse:
    """anthropic's `with_raw_response` results (`APIResponse`, `AsyncAPIResponse`)."""

    def test_sync(self, helicone: HeliconeReceiver, anthropic_url: str) -> None:
        """Body, request id header and URL of a sync raw response are logged."""
        client = anthropic.Anthropic(base_url=anthropic_url, api_key=PROVIDER_KEY, max_retries=0)

        @helicone_logged(provider="anthropic")
        def create(**kwargs: Any) -> Any:
            return client.messages.with_raw_response.create(**kwargs)

        create(model="claude-3-opus-20240229", max_tokens=1024, messages=MESSAGES)
        record, posted = one_delivery(helicone)
        client.close()
        assert record["providerResponse"]["json"] == json.loads(ANTHROPIC_BODY)
        assert record["providerResponse"]["headers"]["request-id"] == "req_anthropic_0001"
        assert record["providerRequest"]["url"] == f"{anthropic_url}/v1/messages"
        assert PROVIDER_KEY.encode() not in posted

    def test_keyword_request(self, helicone: HeliconeReceiver, anthropic_url: str) -> None:
        """An SDK-style call's keywords become the request of the record."""
        client = anthropic.Anthropic(base_url=anthropic_url, api_key=PROVIDER_KEY, max_retries=0)

        @helicone_logged(provider="anthropic")
        def create(**kwargs: Any) -> Any:
            return client.messages.with_raw_response.create(**kwargs)

        create(model="claude-3-opus-20240229", max_tokens=1024, messages=MESSAGES, timeout=5.0)
        record = one_delivery(helicone)[0]
        client.close()
        assert record["providerRequest"]["json"] == {
            "model": "claude-3-opus-20240229",
            "max_tokens": 1024,
            "messages": MESSAGES,
        }

    def test_async(self, helicone: HeliconeReceiver, anthropic_url: str) -> None:
        """An AsyncAPIResponse, whose parse() is a coroutine, is logged from its read body."""

        @helicone_logged(provider="anthropic")
        async def create(**kwargs: Any) -> Any:
            async with anthropic.AsyncAnthropic(
                base_url=anthropic_url, api_key=PROVIDER_KEY, max_retries=0
            ) as client:
                return await client.messages.with_raw_response.create(**kwargs)

        raw = asyncio.run(create(model="claude-3-opus", max_tokens=8, messages=MESSAGES))
        record = one_delivery(helicone)[0]
        assert type(raw).__name__ == "AsyncAPIResponse"
        assert record["providerResponse"]["json"] == json.loads(ANTHROPIC_BODY)
        assert (
            record["providerResponse"]["headers"]["anthropic-ratelimit-requests-remaining"] == "49"
        )


class TestProviderFromURL:
    """The provider a request URL's host names."""

    @pytest.mark.parametrize(
        ("url", "provider"),
        [
            ("https://api.openai.com/v1/chat/completions", "openai"),
            ("https://api.anthropic.com/v1/messages", "anthropic"),
            ("https://my-resource.openai.azure.com/openai/deployments/d/chat/completions", "azure"),
            ("https://api.groq.com/openai/v1/chat/completions", "groq"),
            ("https://api.portkey.ai/v1/chat/completions", None),
            ("http://127.0.0.1:8787/v1/chat/completions", None),
            ("https://openai.azure.com.example.invalid/v1", None),
            (None, None),
        ],
    )
    def test_host(self, url: str | None, provider: str | None) -> None:
        """Known hosts give their provider; gateways and unknown hosts give None."""
        assert provider_for_url(url) == provider

    def test_portkey_provider_wins(
        self, jawn_receiver: HeliconeReceiver, replay: ReplayServer
    ) -> None:
        """On a jawn server the record's provider field comes from x-portkey-provider."""
        heliconetrace.configure(api_key=TEST_KEY, base_url=jawn_receiver.url)
        client = openai.OpenAI(
            base_url=replay.url,
            api_key=PROVIDER_KEY,
            max_retries=0,
            default_headers={"x-portkey-provider": "groq"},
        )

        @helicone_logged
        def chat(body: dict[str, Any]) -> Any:
            return client.chat.completions.with_raw_response.create(**body)

        chat({"model": "llama-3.1-8b-instant", "messages": MESSAGES})
        record = one_delivery(jawn_receiver)[0]
        client.close()
        assert record["provider"] == "GROQ"

    def test_span_provider_wins(
        self, jawn_receiver: HeliconeReceiver, replay: ReplayServer
    ) -> None:
        """A provider set on the decorator is kept over what the headers name."""
        heliconetrace.configure(api_key=TEST_KEY, base_url=jawn_receiver.url)
        client = openai.OpenAI(
            base_url=replay.url,
            api_key=PROVIDER_KEY,
            max_retries=0,
            default_headers={"x-portkey-provider": "groq"},
        )

        @helicone_logged(provider="openai")
        def chat(body: dict[str, Any]) -> Any:
            return client.chat.completions.with_raw_response.create(**body)

        chat({"model": "gpt-4o-mini", "messages": MESSAGES})
        record = one_delivery(jawn_receiver)[0]
        client.close()
        assert record["provider"] == "OPENAI"


class TestSafeURL:
    """Request URLs lose their credentials before they are logged."""

    def test_user_info(self) -> None:
        """A user name and password in the URL are dropped."""
        assert safe_url("https://user:pw@127.0.0.1:8787/v1") == "https://127.0.0.1:8787/v1"

    def test_secret_query(self) -> None:
        """Query values named like credentials are masked; others are kept."""
        url = safe_url("https://r.openai.azure.com/x?api-version=2024-06-01&api-key=abc123&key=k9")
        assert "abc123" not in url
        assert "k9" not in url
        assert "api-version=2024-06-01" in url

    def test_plain(self) -> None:
        """A URL without credentials is unchanged."""
        assert safe_url("http://127.0.0.1:8100/v1/chat/completions") == (
            "http://127.0.0.1:8100/v1/chat/completions"
        )


class TestUnwrap:
    """`unwrap_raw_response` on values that are not raw responses."""

    def test_other_values(self) -> None:
        """Dicts, SDK models and strings are not raw responses."""
        completion = openai.types.chat.ChatCompletion.model_validate(OPENAI_BODY)
        for value in ({"model": "m"}, completion, "text", None):
            assert unwrap_raw_response(value) is None
