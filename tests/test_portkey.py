"""Portkey request headers becoming Helicone properties, and credentials never logged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import heliconetrace
from examples.replay_server import ReplayServer
from heliconetrace import helicone_logged, helicone_span
from heliconetrace._metadata import EMPTY
from heliconetrace._portkey import portkey_metadata, provider_for_route
from tests.conftest import TEST_KEY
from tests.helicone_schema import assert_valid_record
from tests.receiver import HeliconeReceiver

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
RESPONSE = {"id": "chatcmpl-1", "object": "chat.completion", "choices": []}
PORTKEY_KEY = "pk-portkey-secret-0123456789"
PROVIDER_KEY = "sk-provider-secret-0123456789"
AZURE_KEY = "azure-key-0123456789"
METADATA = {"_user": "u-42", "environment": "prod", "api_key": "meta-secret-0123456789"}
PORTKEY_HEADERS = {
    "x-portkey-api-key": PORTKEY_KEY,
    "Authorization": f"Bearer {PROVIDER_KEY}",
    "api-key": AZURE_KEY,
    "x-portkey-virtual-key": "openai-virtual-7f3a",
    "x-portkey-provider": "openai",
    "x-portkey-trace-id": "trace-0001",
    "x-portkey-metadata": json.dumps(METADATA),
}
SECRETS = (PORTKEY_KEY, PROVIDER_KEY, AZURE_KEY, "meta-secret-0123456789")


def one_delivery(helicone: HeliconeReceiver) -> tuple[dict[str, Any], bytes]:
    """Return the one record delivered, and its bytes as they were posted."""
    assert heliconetrace.flush(5.0)
    records = helicone.wait_for(1)
    assert len(records) == 1
    assert_valid_record(records[0])
    posted = [request.body for request in helicone.requests if request.method == "POST"]
    return records[0], posted[-1]


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


class TestProperties:
    """Which Portkey headers become which properties."""

    def test_named_headers(self) -> None:
        """Virtual key, provider and trace id become Portkey-* properties."""
        properties = portkey_metadata(PORTKEY_HEADERS).properties
        assert properties["Portkey-Virtual-Key"] == "openai-virtual-7f3a"
        assert properties["Portkey-Provider"] == "openai"
        assert properties["Portkey-Trace-Id"] == "trace-0001"

    def test_metadata_keys(self) -> None:
        """Each key of x-portkey-metadata becomes a property of its own name."""
        properties = portkey_metadata(PORTKEY_HEADERS).properties
        assert properties["_user"] == "u-42"
        assert properties["environment"] == "prod"

    def test_no_credentials(self) -> None:
        """Credential headers and metadata keys named like credentials give no property."""
        properties = portkey_metadata(PORTKEY_HEADERS).properties
        assert set(properties) == {
            "Portkey-Virtual-Key",
            "Portkey-Provider",
            "Portkey-Trace-Id",
            "_user",
            "environment",
        }

    def test_header_case(self) -> None:
        """Header names match whatever their case."""
        properties = portkey_metadata({"X-Portkey-Trace-Id": "t-1"}).properties
        assert properties == {"Portkey-Trace-Id": "t-1"}

    def test_no_portkey_headers(self) -> None:
        """Headers without x-portkey-* give no metadata at all."""
        assert portkey_metadata({"Authorization": "Bearer x", "accept": "*/*"}) is EMPTY

    def test_metadata_not_object(self) -> None:
        """An x-portkey-metadata value that is not a JSON object is ignored."""
        for text in ("not json", "[1, 2]", '"text"'):
            assert portkey_metadata({"x-portkey-metadata": text}) is EMPTY, text

    def test_invalid_metadata_entries(self) -> None:
        """Metadata keys that cannot be header names and values of other types are skipped."""
        text = json.dumps({"bad key": "x", "nested": {"a": 1}, "ok": 3, "flag": True})
        properties = portkey_metadata({"x-portkey-metadata": text}).properties
        assert properties == {"ok": "3", "flag": "true"}

    def test_key_shaped_value(self) -> None:
        """A metadata value shaped like an API key is masked."""
        text = json.dumps({"note": "sk-abcdefghijklmnop"})
        properties = portkey_metadata({"x-portkey-metadata": text}).properties
        assert "abcdefghijklmnop" not in properties["note"]

    def test_response_trace_id(self) -> None:
        """A trace id missing from the request is read from the response headers."""
        metadata = portkey_metadata(
            {"x-portkey-virtual-key": "vk"}, None, {"x-portkey-trace-id": "from-response"}
        )
        assert metadata.properties["Portkey-Trace-Id"] == "from-response"


class TestProvider:
    """Which x-portkey-provider values set the span's provider."""

    @pytest.mark.parametrize(
        ("slug", "url", "provider"),
        [
            ("openai", None, "openai"),
            ("groq", "https://api.portkey.ai/v1/chat/completions", "groq"),
            ("azure-openai", "https://api.portkey.ai/v1/chat/completions", "azure"),
            ("together-ai", None, "together"),
            # Portkey's unified route returns OpenAI's format, whatever the provider.
            ("anthropic", "https://api.portkey.ai/v1/chat/completions", None),
            ("anthropic", "https://api.portkey.ai/v1/messages", "anthropic"),
            ("openai", "https://api.portkey.ai/v1/messages", None),
            ("@openai-prod", None, None),
            ("unknown-provider", None, None),
        ],
    )
    def test_route(self, slug: str, url: str | None, provider: str | None) -> None:
        """A provider counts only where Portkey returns that provider's format."""
        assert provider_for_route(slug, url) == provider


class TestSetRequest:
    """Portkey headers given to span.set_request(headers=...)."""

    def test_properties(self, helicone: HeliconeReceiver) -> None:
        """The Portkey properties reach the record's meta."""
        with helicone_span() as span:
            span.set_request(BODY, headers=PORTKEY_HEADERS)
            span.set_response(RESPONSE)
        meta = one_delivery(helicone)[0]["providerRequest"]["meta"]
        assert meta["Helicone-Property-Portkey-Virtual-Key"] == "openai-virtual-7f3a"
        assert meta["Helicone-Property-Portkey-Provider"] == "openai"
        assert meta["Helicone-Property-Portkey-Trace-Id"] == "trace-0001"
        assert meta["Helicone-Property-_user"] == "u-42"
        assert meta["Helicone-Property-environment"] == "prod"

    def test_no_credentials(self, helicone: HeliconeReceiver) -> None:
        """No credential value appears anywhere in the posted record."""
        with helicone_span() as span:
            span.set_request(BODY, headers=PORTKEY_HEADERS)
            span.set_response(RESPONSE)
        posted = one_delivery(helicone)[1]
        for secret in SECRETS:
            assert secret.encode() not in posted, secret

    def test_span_properties_win(self, helicone: HeliconeReceiver) -> None:
        """A property set on the span keeps its value over a Portkey metadata key."""
        with helicone_span(properties={"environment": "staging"}) as span:
            span.set_request(BODY, headers=PORTKEY_HEADERS)
            span.set_response(RESPONSE)
        meta = one_delivery(helicone)[0]["providerRequest"]["meta"]
        assert meta["Helicone-Property-environment"] == "staging"

    def test_provider(self, jawn_receiver: HeliconeReceiver) -> None:
        """x-portkey-provider sets the provider of a jawn record when the span has none."""
        heliconetrace.configure(api_key=TEST_KEY, base_url=jawn_receiver.url)
        with helicone_span() as span:
            span.set_request(BODY, headers={"x-portkey-provider": "mistral-ai"})
            span.set_response(RESPONSE)
        assert one_delivery(jawn_receiver)[0]["provider"] == "MISTRAL"


class TestRawResponse:
    """Portkey headers of an openai client, read from a raw response's request."""

    def test_client_headers(self, helicone: HeliconeReceiver, replay: ReplayServer) -> None:
        """The client's default Portkey headers become properties, its keys appear nowhere."""
        client = openai.OpenAI(
            base_url=replay.url,
            api_key=PROVIDER_KEY,
            max_retries=0,
            default_headers={k: v for k, v in PORTKEY_HEADERS.items() if k != "Authorization"},
        )

        @helicone_logged
        def chat(body: dict[str, Any]) -> Any:
            return client.chat.completions.with_raw_response.create(**body)

        chat(BODY)
        record, posted = one_delivery(helicone)
        client.close()
        meta = record["providerRequest"]["meta"]
        assert meta["Helicone-Property-Portkey-Virtual-Key"] == "openai-virtual-7f3a"
        assert meta["Helicone-Property-_user"] == "u-42"
        for secret in SECRETS:
            assert secret.encode() not in posted, secret

    def test_extra_headers(self, helicone: HeliconeReceiver, replay: ReplayServer) -> None:
        """Portkey headers passed per call as extra_headers are read too."""
        client = openai.OpenAI(base_url=replay.url, api_key=PROVIDER_KEY, max_retries=0)

        @helicone_logged
        def chat(body: dict[str, Any]) -> Any:
            return client.chat.completions.with_raw_response.create(
                **body, extra_headers={"x-portkey-trace-id": "per-call"}
            )

        chat(BODY)
        meta = one_delivery(helicone)[0]["providerRequest"]["meta"]
        client.close()
        assert meta["Helicone-Property-Portkey-Trace-Id"] == "per-call"
