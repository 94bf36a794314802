"""Tests of the Helicone stand-in server and of the log-body rules it applies."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.helicone_schema import (
    INVALID_TIME,
    MISSING_PART,
    NEGATIVE_TIME,
    START_AFTER_END,
    assert_valid_record,
    validate_worker_body,
)
from tests.receiver import HeliconeReceiver

KEY = "sk-helicone-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
REQUEST_ID = "0b0fd4c4-5d69-4f3c-9c8b-1d2e3f405162"


def valid_body() -> dict[str, Any]:
    """Build a log body that passes every rule."""
    return {
        "providerRequest": {
            "url": "custom-model-nopath",
            "json": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
            "meta": {"Helicone-Request-Id": REQUEST_ID, "Helicone-User-Id": "user-1"},
        },
        "providerResponse": {
            "json": {"id": "chatcmpl-1", "choices": []},
            "status": 200,
            "headers": {"x-request-id": "req-1"},
        },
        "timing": {
            "startTime": {"seconds": 1_700_000_000, "milliseconds": 250},
            "endTime": {"seconds": 1_700_000_001, "milliseconds": 5},
            "timeToFirstToken": 120.5,
        },
    }


def changed(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    """Return a valid body after `change` edited it in place."""
    body = valid_body()
    change(body)
    return body


@pytest.fixture
def receiver() -> Iterator[HeliconeReceiver]:
    with HeliconeReceiver(api_key=KEY) as server:
        yield server


@pytest.fixture
def jawn() -> Iterator[HeliconeReceiver]:
    with HeliconeReceiver(api_key=KEY, kind="jawn") as server:
        yield server


def post(
    server: HeliconeReceiver,
    body: object,
    path: str = "/custom/v1/log",
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> httpx.Response:
    return httpx.post(
        server.url + path,
        json=body,
        headers=AUTH if headers is None else headers,
        timeout=timeout,
    )


# Each case edits a valid body so that it breaks exactly one rule.
INVALID_CASES: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("no-request", lambda b: b.pop("providerRequest"), MISSING_PART),
    ("no-response", lambda b: b.pop("providerResponse"), MISSING_PART),
    ("no-timing", lambda b: b.pop("timing"), MISSING_PART),
    ("null-timing", lambda b: b.update(timing=None), MISSING_PART),
    (
        "url-int",
        lambda b: b["providerRequest"].update(url=1),
        "Invalid providerRequest: 'url' should be a string",
    ),
    (
        "meta-list",
        lambda b: b["providerRequest"].update(meta=[]),
        "Invalid providerRequest: 'meta' should be an object",
    ),
    (
        "meta-null",
        lambda b: b["providerRequest"].update(meta=None),
        "Invalid providerRequest: 'meta' should be an object",
    ),
    (
        "meta-value-int",
        lambda b: b["providerRequest"]["meta"].update({"Helicone-Property-Tries": 3}),
        "Invalid providerRequest: 'meta.Helicone-Property-Tries' should be a string",
    ),
    (
        "request-json-missing",
        lambda b: b["providerRequest"].pop("json"),
        "Invalid providerRequest: 'json' is undefined",
    ),
    (
        "request-json-list",
        lambda b: b["providerRequest"].update(json=[]),
        "Invalid providerRequest: 'json' should be an object",
    ),
    (
        "response-json-missing",
        lambda b: b["providerResponse"].pop("json"),
        "Invalid providerResponse: 'json' is undefined",
    ),
    (
        "response-json-string",
        lambda b: b["providerResponse"].update(json="{}"),
        "Invalid providerResponse: 'json' should be an object",
    ),
    (
        "text-body-null",
        lambda b: b["providerResponse"].update(textBody=None),
        "Invalid providerResponse: 'textBody' should be a string",
    ),
    (
        "status-string",
        lambda b: b["providerResponse"].update(status="200"),
        "Invalid providerResponse: 'status' should be a number",
    ),
    (
        "status-bool",
        lambda b: b["providerResponse"].update(status=True),
        "Invalid providerResponse: 'status' should be a number",
    ),
    (
        "status-float",
        lambda b: b["providerResponse"].update(status=200.5),
        "Invalid providerResponse: 'status' should be an integer",
    ),
    (
        "headers-null",
        lambda b: b["providerResponse"].update(headers=None),
        "Invalid providerResponse: 'headers' should be an object",
    ),
    (
        "header-value-int",
        lambda b: b["providerResponse"]["headers"].update({"x-ratelimit-remaining": 9}),
        "Invalid providerResponse: 'headers.x-ratelimit-remaining' should be a string",
    ),
    (
        "start-missing",
        lambda b: b["timing"].pop("startTime"),
        "Invalid timing: 'startTime' should be an object with seconds and milliseconds",
    ),
    (
        "seconds-string",
        lambda b: b["timing"]["startTime"].update(seconds="1700000000"),
        "Invalid timing: 'startTime.seconds' should be a number",
    ),
    (
        "milliseconds-float",
        lambda b: b["timing"]["endTime"].update(milliseconds=5.5),
        "Invalid timing: 'endTime.milliseconds' should be an integer",
    ),
    (
        "milliseconds-1000",
        lambda b: b["timing"]["startTime"].update(milliseconds=1000),
        "Invalid timing: 'startTime.milliseconds' should be between 0 and 999",
    ),
    (
        "start-after-end",
        lambda b: b["timing"]["startTime"].update(seconds=1_700_000_002),
        START_AFTER_END,
    ),
    (
        "negative-times",
        lambda b: b["timing"].update(
            startTime={"seconds": -2, "milliseconds": 0},
            endTime={"seconds": -1, "milliseconds": 0},
        ),
        NEGATIVE_TIME,
    ),
    (
        "beyond-date-range",
        lambda b: b["timing"]["endTime"].update(seconds=10**13),
        INVALID_TIME,
    ),
    (
        "ttft-negative",
        lambda b: b["timing"].update(timeToFirstToken=-1),
        "Invalid timing: 'timeToFirstToken' should be a non-negative number",
    ),
    (
        "ttft-null",
        lambda b: b["timing"].update(timeToFirstToken=None),
        "Invalid timing: 'timeToFirstToken' should be a non-negative number",
    ),
    (
        "provider-lower-case",
        lambda b: b.update(provider="openai"),
        'Invalid provider: should be an upper-case string such as "OPENAI"',
    ),
]


class TestSchema:
    """validate_worker_body and assert_valid_record."""

    def test_valid_body(self) -> None:
        """A complete body has no violations."""
        assert validate_worker_body(valid_body()) == []

    @pytest.mark.parametrize(
        "body",
        [
            changed(lambda b: b["providerResponse"].update(json={}, textBody="data: {}\n\n")),
            changed(lambda b: b.update(provider="OPENAI")),
            changed(lambda b: b["timing"].pop("timeToFirstToken")),
            changed(lambda b: b["timing"].update(endTime=dict(b["timing"]["startTime"]))),
            changed(lambda b: b["providerRequest"].update(meta={})),
        ],
        ids=["text-body", "provider", "no-ttft", "start-equals-end", "empty-meta"],
    )
    def test_valid_variants(self, body: dict[str, Any]) -> None:
        """Optional fields, an empty meta and a zero duration are all valid."""
        assert validate_worker_body(body) == []

    @pytest.mark.parametrize(
        ("change", "message"),
        [(change, message) for _, change, message in INVALID_CASES],
        ids=[case_id for case_id, _, _ in INVALID_CASES],
    )
    def test_rule_broken(self, change: Callable[[dict[str, Any]], object], message: str) -> None:
        """Each broken rule yields exactly its message."""
        assert validate_worker_body(changed(change)) == [message]

    def test_not_an_object(self) -> None:
        """A JSON array is not a log body."""
        assert validate_worker_body([]) == ["Invalid body: should be a JSON object, not list"]

    def test_collects_all(self) -> None:
        """Every violation is listed, in the worker's order."""
        body = valid_body()
        body["providerRequest"]["url"] = None
        body["providerResponse"]["status"] = "ok"
        body["timing"]["startTime"]["seconds"] = 1_800_000_000
        assert validate_worker_body(body) == [
            "Invalid providerRequest: 'url' should be a string",
            "Invalid providerResponse: 'status' should be a number",
            START_AFTER_END,
        ]

    def test_assert_passes(self) -> None:
        """assert_valid_record returns quietly for a valid body."""
        assert_valid_record(valid_body())

    def test_assert_lists_violations(self) -> None:
        """assert_valid_record names each violation in its AssertionError."""
        body = changed(lambda b: b["providerResponse"].update(status="200"))
        with pytest.raises(AssertionError, match="'status' should be a number"):
            assert_valid_record(body)


class TestWorkerAccepts:
    """A worker receiver given valid bodies."""

    def test_valid_body_response(self, receiver: HeliconeReceiver) -> None:
        """A valid body gets 200 ok."""
        response = post(receiver, valid_body())
        assert response.status_code == 200
        assert response.text == "ok"

    def test_valid_body_recorded(self, receiver: HeliconeReceiver) -> None:
        """The accepted body is kept exactly, and nothing is rejected."""
        post(receiver, valid_body())
        assert receiver.records == [valid_body()]
        assert receiver.rejected == []

    def test_helicone_id_from_meta(self, receiver: HeliconeReceiver) -> None:
        """The helicone-id header echoes meta's Helicone-Request-Id."""
        response = post(receiver, valid_body())
        assert response.headers["helicone-id"] == REQUEST_ID

    def test_helicone_id_replaced(self, receiver: HeliconeReceiver) -> None:
        """A Helicone-Request-Id that is not a UUID is replaced with a random UUID."""
        body = changed(lambda b: b["providerRequest"]["meta"].update({"Helicone-Request-Id": "x"}))
        helicone_id = post(receiver, body).headers["helicone-id"]
        assert uuid.UUID(helicone_id).version == 4

    def test_helicone_id_http_header_wins(self, receiver: HeliconeReceiver) -> None:
        """A Helicone-Request-Id HTTP header takes precedence over meta."""
        other_id = str(uuid.uuid4())
        response = post(receiver, valid_body(), headers={**AUTH, "Helicone-Request-Id": other_id})
        assert response.headers["helicone-id"] == other_id

    @pytest.mark.parametrize("path", ["/custom/v1/log", "/oai/v1/log", "/anthropic/v1/log"])
    def test_paths(self, receiver: HeliconeReceiver, path: str) -> None:
        """Each worker log path accepts a body."""
        assert post(receiver, valid_body(), path=path).status_code == 200

    def test_request_kept(self, receiver: HeliconeReceiver) -> None:
        """The request is kept with lower-case header names, raw body and response status."""
        post(receiver, valid_body(), path="/oai/v1/log")
        [request] = receiver.requests
        assert request.method == "POST"
        assert request.path == "/oai/v1/log"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.json() == valid_body()
        assert request.status == 200

    def test_client_port_shared(self, receiver: HeliconeReceiver) -> None:
        """Requests over one kept-alive connection share a client port; new clients do not."""
        with httpx.Client(headers=AUTH) as client:
            for _ in range(2):
                client.post(receiver.url + "/custom/v1/log", json=valid_body())
        post(receiver, valid_body())
        ports = [request.client_port for request in receiver.requests]
        assert ports[0] == ports[1]
        assert ports[2] != ports[0]


class TestWorkerRejects:
    """A worker receiver given bad paths, bodies or credentials."""

    def test_unknown_path(self, receiver: HeliconeReceiver) -> None:
        """A path the worker does not serve gets 400 invalid path."""
        response = post(receiver, valid_body(), path="/v1/trace/custom/log")
        assert response.status_code == 400
        assert response.text == "invalid path"

    def test_get_request(self, receiver: HeliconeReceiver) -> None:
        """A GET on a log path also gets 400 invalid path."""
        response = httpx.get(receiver.url + "/custom/v1/log", headers=AUTH)
        assert response.status_code == 400
        assert response.text == "invalid path"

    @pytest.mark.parametrize(
        ("change", "message"),
        [(change, message) for _, change, message in INVALID_CASES],
        ids=[case_id for case_id, _, _ in INVALID_CASES],
    )
    def test_invalid_body(
        self,
        receiver: HeliconeReceiver,
        change: Callable[[dict[str, Any]], object],
        message: str,
    ) -> None:
        """A body breaking one rule gets 400 with that rule's message and is kept as rejected."""
        body = changed(change)
        response = post(receiver, body)
        assert response.status_code == 400
        assert response.json() == {"error": message}
        assert receiver.records == []
        assert [rejected.body for rejected in receiver.rejected] == [body]

    def test_unparseable_body(self, receiver: HeliconeReceiver) -> None:
        """A body that is not JSON is read as {}, as the worker does."""
        response = httpx.post(receiver.url + "/custom/v1/log", content=b"{oops", headers=AUTH)
        assert response.status_code == 400
        assert response.json() == {"error": MISSING_PART}

    def test_payload_too_large(self, receiver: HeliconeReceiver) -> None:
        """A body over 10 MiB gets 400 Payload too large, before any auth check."""
        body = changed(lambda b: b["providerResponse"].update(textBody="x" * (10 * 1024 * 1024)))
        response = post(receiver, body, headers={})
        assert response.status_code == 400
        assert response.text == "Payload too large"
        assert receiver.rejected[0].errors == ["Payload too large"]

    def test_no_authorization(self, receiver: HeliconeReceiver) -> None:
        """A request without Authorization gets 401 Unauthorized as text."""
        response = post(receiver, valid_body(), headers={})
        assert response.status_code == 401
        assert response.text == "Unauthorized"
        assert receiver.records == []

    def test_helicone_auth_alone(self, receiver: HeliconeReceiver) -> None:
        """Helicone-Auth without Authorization fails the worker's first check."""
        response = post(receiver, valid_body(), headers={"Helicone-Auth": f"Bearer {KEY}"})
        assert response.status_code == 401
        assert response.text == "Unauthorized"

    def test_wrong_key(self, receiver: HeliconeReceiver) -> None:
        """A wrong key gets 401 with a JSON error."""
        response = post(receiver, valid_body(), headers={"Authorization": "Bearer sk-wrong"})
        assert response.status_code == 401
        assert "error" in response.json()
        assert receiver.records == []

    def test_body_checked_before_key(self, receiver: HeliconeReceiver) -> None:
        """An invalid body with a wrong key gets 400, because the worker validates first."""
        body = changed(lambda b: b.pop("timing"))
        response = post(receiver, body, headers={"Authorization": "Bearer sk-wrong"})
        assert response.status_code == 400


class TestJawn:
    """A jawn receiver."""

    @pytest.mark.parametrize("path", ["/v1/trace/custom/log", "/v1/trace/custom/v1/log"])
    def test_accepts(self, jawn: HeliconeReceiver, path: str) -> None:
        """A valid body gets 200 with an empty body and is recorded."""
        response = post(jawn, valid_body(), path=path)
        assert response.status_code == 200
        assert response.content == b""
        assert jawn.records == [valid_body()]

    def test_worker_path(self, jawn: HeliconeReceiver) -> None:
        """A worker path does not exist on jawn and gets 404."""
        assert post(jawn, valid_body()).status_code == 404

    def test_no_authorization(self, jawn: HeliconeReceiver) -> None:
        """A request without credentials gets jawn's 401 JSON."""
        response = post(jawn, valid_body(), path="/v1/trace/custom/log", headers={})
        assert response.status_code == 401
        assert response.json() == {"error": "No authorization header"}

    def test_wrong_key(self, jawn: HeliconeReceiver) -> None:
        """A wrong key gets 401 No API key found."""
        headers = {"Authorization": "Bearer sk-wrong"}
        response = post(jawn, valid_body(), path="/v1/trace/custom/log", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "No API key found"

    def test_wrong_key_echoed(self, jawn: HeliconeReceiver) -> None:
        """The 401 body echoes the Authorization header, as jawn does."""
        headers = {"Authorization": "Bearer sk-wrong"}
        response = post(jawn, valid_body(), path="/v1/trace/custom/log", headers=headers)
        echoed = response.json()["authorizationString"]["data"]["token"]
        assert echoed == "Bearer sk-wrong"

    def test_key_without_bearer(self, jawn: HeliconeReceiver) -> None:
        """A bare key passes, because jawn retries the lookup with the raw header."""
        headers = {"Authorization": KEY}
        response = post(jawn, valid_body(), path="/v1/trace/custom/log", headers=headers)
        assert response.status_code == 200

    def test_helicone_authorization_dropped(self, jawn: HeliconeReceiver) -> None:
        """A log sent with only helicone-authorization gets 200 but is not stored."""
        token = f'{{"_type": "bearer", "token": "Bearer {KEY}"}}'
        headers = {"helicone-authorization": token}
        response = post(jawn, valid_body(), path="/v1/trace/custom/log", headers=headers)
        assert response.status_code == 200
        assert jawn.records == []
        assert "stored nothing" in jawn.rejected[0].errors[0]

    def test_helicone_authorization_invalid(self, jawn: HeliconeReceiver) -> None:
        """A helicone-authorization header that is not JSON gets 401 Invalid auth header."""
        headers = {"helicone-authorization": "Bearer x"}
        response = post(jawn, valid_body(), path="/v1/trace/custom/log", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "Invalid auth header"}

    def test_invalid_body(self, jawn: HeliconeReceiver) -> None:
        """An invalid body gets 400 with the first violation."""
        body = changed(lambda b: b["providerResponse"].update(status="200"))
        response = post(jawn, body, path="/v1/trace/custom/log")
        assert response.status_code == 400
        assert response.json() == {"error": "Invalid providerResponse: 'status' should be a number"}

    def test_unparseable_body(self, jawn: HeliconeReceiver) -> None:
        """A body that is not JSON gets 400 and is kept as rejected."""
        url = jawn.url + "/v1/trace/custom/log"
        response = httpx.post(url, content=b"{oops", headers=AUTH)
        assert response.status_code == 400
        assert jawn.rejected[0].body == b"{oops"


class TestModes:
    """Failure modes set through `mode` and `queue_modes`."""

    def test_error_200(self, receiver: HeliconeReceiver) -> None:
        """Mode error-200 returns 200 with an error body and stores nothing."""
        receiver.mode = "error-200"
        response = post(receiver, valid_body())
        assert response.status_code == 200
        assert "error" in response.json()
        assert receiver.records == []

    @pytest.mark.parametrize(("mode", "status"), [("401", 401), ("404", 404), ("500", 500)])
    def test_status_modes(self, receiver: HeliconeReceiver, mode: Any, status: int) -> None:
        """Modes 401, 404 and 500 return that status and store nothing."""
        receiver.mode = mode
        assert post(receiver, valid_body()).status_code == status
        assert receiver.records == []

    def test_429_retry_after(self, receiver: HeliconeReceiver) -> None:
        """Mode 429 returns 429 with Retry-After: 1."""
        receiver.mode = "429"
        response = post(receiver, valid_body())
        assert response.status_code == 429
        assert response.headers["retry-after"] == "1"

    def test_failure_mode_still_validates(self, receiver: HeliconeReceiver) -> None:
        """An invalid body sent during a failure mode still lands in rejected."""
        receiver.mode = "500"
        post(receiver, changed(lambda b: b.pop("timing")))
        assert receiver.rejected[0].errors == [MISSING_PART]

    def test_slow(self, receiver: HeliconeReceiver) -> None:
        """Mode slow waits `delay` seconds, then accepts."""
        receiver.mode = "slow"
        receiver.delay = 0.3
        started = time.monotonic()
        response = post(receiver, valid_body())
        assert time.monotonic() - started >= 0.3
        assert response.status_code == 200

    def test_hang_times_out(self, receiver: HeliconeReceiver) -> None:
        """Mode hang never responds, so the client times out."""
        receiver.mode = "hang"
        with pytest.raises(httpx.ReadTimeout):
            post(receiver, valid_body(), timeout=0.3)

    def test_hang_stops_fast(self) -> None:
        """stop() returns quickly and drops the connection of a hanging request."""
        server = HeliconeReceiver(api_key=KEY).start()
        server.mode = "hang"
        errors: list[Exception] = []

        def send() -> None:
            try:
                post(server, valid_body(), timeout=10)
            except httpx.HTTPError as error:
                errors.append(error)

        client = threading.Thread(target=send)
        client.start()
        while not server.requests:
            time.sleep(0.01)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 0.5
        client.join(timeout=5)
        assert [type(error) for error in errors] == [httpx.RemoteProtocolError]

    def test_queue_modes(self, receiver: HeliconeReceiver) -> None:
        """Queued modes are used once each, then `mode` applies again."""
        receiver.queue_modes("500", "429")
        statuses = [post(receiver, valid_body()).status_code for _ in range(3)]
        assert statuses == [500, 429, 200]

    def test_mode_unknown(self, receiver: HeliconeReceiver) -> None:
        """Setting an unknown mode raises ValueError."""
        with pytest.raises(ValueError, match="unknown mode"):
            receiver.mode = "teapot"  # type: ignore[assignment]

    def test_queue_modes_unknown(self, receiver: HeliconeReceiver) -> None:
        """An unknown mode is rejected at once."""
        with pytest.raises(ValueError, match="unknown mode"):
            receiver.queue_modes("teapot")  # type: ignore[arg-type]


class TestWaitFor:
    """wait_for."""

    def test_returns_records(self, receiver: HeliconeReceiver) -> None:
        """It returns once enough bodies arrived from another thread."""
        second = copy.deepcopy(valid_body())
        second["providerRequest"]["meta"]["Helicone-User-Id"] = "user-2"
        sender = threading.Timer(0.1, lambda: [post(receiver, b) for b in (valid_body(), second)])
        sender.start()
        records = receiver.wait_for(2, timeout=5)
        sender.join()
        assert records == [valid_body(), second]

    def test_timeout_message(self, receiver: HeliconeReceiver) -> None:
        """On timeout the AssertionError lists the requests that did arrive."""
        post(receiver, valid_body(), headers={})
        with pytest.raises(AssertionError, match=r"POST /custom/v1/log -> 401"):
            receiver.wait_for(1, timeout=0.2)


class TestLifecycle:
    """start, stop and the context manager."""

    def test_url_is_loopback(self, receiver: HeliconeReceiver) -> None:
        """The receiver listens on 127.0.0.1."""
        assert receiver.url.startswith("http://127.0.0.1:")

    def test_start_twice(self, receiver: HeliconeReceiver) -> None:
        """Starting a running receiver raises RuntimeError."""
        with pytest.raises(RuntimeError):
            receiver.start()

    def test_stop_twice(self) -> None:
        """stop() may be called again after the receiver stopped."""
        server = HeliconeReceiver().start()
        server.stop()
        server.stop()

    def test_closed_after_stop(self) -> None:
        """After the context exits, the port refuses connections."""
        with HeliconeReceiver() as server:
            url = server.url
        with pytest.raises(httpx.ConnectError):
            httpx.post(url + "/custom/v1/log", json=valid_body(), headers=AUTH, timeout=2)

    def test_unknown_kind(self) -> None:
        """An unknown kind raises ValueError."""
        with pytest.raises(ValueError, match="kind"):
            HeliconeReceiver(kind="proxy")  # type: ignore[arg-type]
