"""`python -m heliconetrace doctor`: check the Helicone connection step by step, in plain words.

The steps, in order. The first that fails ends the check with its cause and a one-line fix:

1. settings: an API key is set (without one, records go to the local file);
2. DNS: the log URL's host resolves;
3. TCP: the host accepts a connection on the port;
4. TLS, for https: the handshake succeeds. When it fails, one plain HTTP request on the same port
   shows whether the port speaks plain HTTP (a self-hosted jawn on port 8585 does);
5. log path: a POST with an empty body and without the key. Helicone's servers ask for a key
   (401) on their log paths, and return 404 (jawn) or 400 "invalid path" (worker) elsewhere.
   On a missing path the other kind of server's path is probed the same way, to name the fix;
6. test record: one small record, with the key, marked with the property
   `Heliconetrace-Doctor: true` so it can be found and filtered in Helicone.

Steps 2 to 4 test the direct route, so they are skipped when an HTTP proxy from the environment
applies to the URL. Only step 6 sends the key or a record. The exit status is 0 only when the
server accepted the test record. The key and the bodies of 401 responses (jawn echoes the
Authorization header in them) are never printed.
"""

from __future__ import annotations

import time
from typing import Final, TextIO
from urllib.parse import urlsplit

import httpx

from heliconetrace._config import ENV_API_KEY, ENV_BASE_URL, ENV_LOG_URL, Settings
from heliconetrace._doctor_network import (
    EU_HOST,
    JAWN_DEFAULT_PORT,
    check_dns,
    check_tcp,
    check_tls,
    proxy_for,
)
from heliconetrace._doctor_report import CheckFailed, Report, Target
from heliconetrace._endpoint import JAWN_LOG_PATH, Endpoint, resolve_endpoint
from heliconetrace._record import (
    UNKNOWN_URL,
    LogRecord,
    ProviderRequest,
    ProviderResponse,
    Timestamp,
    Timing,
)
from heliconetrace._redact import redact_text
from heliconetrace._span import new_request_id
from heliconetrace._transport import USER_AGENT

DOCTOR_PROPERTY: Final = "Heliconetrace-Doctor"
DOCTOR_MODEL: Final = "heliconetrace-doctor"
# The test record is an OpenAI-format chat completion, logged as provider "openai".
DOCTOR_PROVIDER: Final = "openai"
EU_KEY_PREFIX: Final = "sk-helicone-eu-"
# Self-hosted jawn's default port; it serves plain HTTP.
WORKER_PROBE_PATH: Final = "/oai/v1/log"
# A timeout of 0 would make sockets non-blocking, so every network step waits at least this long.
MIN_TIMEOUT: Final = 0.5

_WORKER_PATHS_TEXT: Final = "/oai/v1/log, /anthropic/v1/log or /custom/v1/log (by provider)"


def run_doctor(settings: Settings, output: TextIO) -> int:
    """Check the connection `settings` describe, print each step, and return the exit status."""
    report = Report(output)
    report.line("heliconetrace doctor: checking the connection to Helicone.")
    _describe_settings(settings, report)
    if settings.api_key is None:
        report.line()
        report.line(
            f"No API key is set, so heliconetrace appends records to the local file "
            f"{settings.log_file} and sends nothing to Helicone. "
            "See them with `python -m heliconetrace show`."
        )
        report.line(
            f"fix: set {ENV_API_KEY} to a key from your Helicone dashboard, then run again."
        )
        return 1

    endpoint = resolve_endpoint(settings.base_url, settings.log_url, DOCTOR_PROVIDER)
    try:
        target = Target(endpoint.url)
    except ValueError as error:
        report.line()
        report.fail(
            f"the log URL {endpoint.url} is invalid: {error}.",
            f"correct {ENV_LOG_URL if settings.log_url else ENV_BASE_URL}.",
        )
        return 1
    _describe_endpoint(settings, endpoint, target, report)
    timeout = max(settings.request_timeout, MIN_TIMEOUT)
    key = settings.api_key.get_secret_value()
    try:
        if proxy_for(target) is not None:
            report.line()
            report.note(
                f"a proxy from the environment applies to {target.origin}, so the requests go "
                "through it, and the DNS, TCP and TLS steps for the direct route are skipped."
            )
        else:
            addresses = check_dns(target, timeout, report)
            check_tcp(target, addresses, timeout, report)
            if target.https:
                check_tls(settings, target, timeout, report)
        with httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT}) as client:
            _check_log_path(client, settings, endpoint, target, report)
            _send_test_record(client, settings, endpoint, target, key, report)
    except CheckFailed:
        report.line()
        report.line("Result: records do not reach Helicone yet; apply the fix above and run again.")
        return 1
    report.line()
    report.line(
        f"Result: records reach Helicone. Look for the property {DOCTOR_PROPERTY} = true "
        "among its requests."
    )
    return 0


def _describe_settings(settings: Settings, report: Report) -> None:
    report.line()
    report.line("Settings (from the environment, or configure() in this process):")
    report.line(f"   base URL: {settings.base_url}  ({ENV_BASE_URL})")
    report.line(f"   log URL:  {settings.log_url or 'not set'}  ({ENV_LOG_URL})")
    if settings.api_key is None:
        report.line(f"   API key:  not set  ({ENV_API_KEY})")
    else:
        length = len(settings.api_key.get_secret_value())
        report.line(f"   API key:  set, {length} characters  ({ENV_API_KEY})")
    if not settings.enabled:
        report.note(
            "logging is switched off (HELICONETRACE_ENABLED), so the decorator sends and "
            "writes nothing, whatever this check finds."
        )


def _describe_endpoint(
    settings: Settings, endpoint: Endpoint, target: Target, report: Report
) -> None:
    if settings.log_url is not None:
        source = f"{ENV_LOG_URL} names the log URL, and its path is a {endpoint.server} path"
    elif endpoint.server == "worker":
        source = f"{target.host} is Helicone's cloud worker, which takes {_WORKER_PATHS_TEXT}"
    else:
        source = (
            f"{target.host} is taken for a jawn server (Helicone's API server: api.helicone.ai, "
            f"eu.api.helicone.ai, or self-hosted), which takes {JAWN_LOG_PATH}"
        )
    report.line(f"   records go to {endpoint.url}")
    report.line(f"   because {source}.", "   ")


def _probe(client: httpx.Client, url: str) -> httpx.Response | None:
    """POST an empty body without the key; return the response, or None on a network error."""
    try:
        return client.post(url, content=b"", headers={"Content-Type": "application/json"})
    except httpx.HTTPError:
        return None


def _is_missing_path(response: httpx.Response) -> bool:
    # Jawn returns 404 for a path it does not serve, and the worker 400 "invalid path".
    if response.status_code == 404:
        return True
    return response.status_code == 400 and response.text.strip() == "invalid path"


def _check_log_path(
    client: httpx.Client, settings: Settings, endpoint: Endpoint, target: Target, report: Report
) -> None:
    report.step(f"Log path: does {target.origin} serve {target.path}?")
    report.line("   (a POST with an empty body and without the key: nothing is stored)")
    try:
        response = client.post(
            endpoint.url, content=b"", headers={"Content-Type": "application/json"}
        )
    except httpx.HTTPError as error:
        raise report.fail(
            f"the request failed: {type(error).__name__}: {error}.",
            "check the URL and that the server is up; the steps above passed, so the server "
            "accepted the connection but did not answer over HTTP.",
        ) from None

    status = response.status_code
    if status in (401, 403):
        report.ok(f"the server asks for a key at {target.path} (HTTP {status}), as Helicone does.")
        return
    if 200 <= status < 300:
        report.note(
            f"the server returned HTTP {status} without a key, but Helicone asks for one, so "
            "something other than Helicone may answer at this URL."
        )
        return
    if _is_missing_path(response):
        raise _missing_path(client, settings, endpoint, target, status, report)
    if 300 <= status < 400:
        location = response.headers.get("location", "another URL")
        raise report.fail(
            f"the server redirects {target.path} to {location} (HTTP {status}); heliconetrace "
            "does not follow redirects, because they would carry the record elsewhere.",
            f"set {ENV_BASE_URL} to the URL it redirects to.",
        )
    raise report.fail(
        f"unexpected HTTP {status} for a request without a key.",
        f"check that {target.origin} is a Helicone server.",
    )


def _missing_path(
    client: httpx.Client,
    settings: Settings,
    endpoint: Endpoint,
    target: Target,
    status: int,
    report: Report,
) -> CheckFailed:
    """Explain a log path the server does not serve, naming the path it does serve if found."""
    problem = f"the server has no {target.path} (HTTP {status})."
    found = _find_log_path(client, endpoint, target)
    if found is None:
        if endpoint.server == "worker":
            problem += f" That is a worker path; a jawn server takes {JAWN_LOG_PATH} instead."
        else:
            problem += f" A jawn server takes {JAWN_LOG_PATH}, the worker {_WORKER_PATHS_TEXT}."
        return report.fail(
            problem,
            f"set {ENV_BASE_URL} to the server's root URL, without a path prefix, for example "
            f"http://your-host:{JAWN_DEFAULT_PORT} for a self-hosted jawn.",
        )

    path = urlsplit(found).path
    if path == JAWN_LOG_PATH and endpoint.server == "worker":
        problem += f" It takes {JAWN_LOG_PATH}, so it is a jawn server, not the worker."
    elif path == JAWN_LOG_PATH:
        problem += f" It takes {JAWN_LOG_PATH} at its root, without the prefix in the URL."
    else:
        problem += f" It takes {path}, so it is a worker, not a jawn server."
    if resolve_endpoint(target.origin, None, DOCTOR_PROVIDER).url == found:
        unset = f" and unset {ENV_LOG_URL}" if settings.log_url is not None else ""
        return report.fail(problem, f"set {ENV_BASE_URL}={target.origin}{unset}.")
    return report.fail(problem, f"set {ENV_LOG_URL}={found}.")


def _find_log_path(client: httpx.Client, endpoint: Endpoint, target: Target) -> str | None:
    """Probe the known log paths on the same server; return the URL of one it serves, or None."""
    for path in (JAWN_LOG_PATH, WORKER_PROBE_PATH):
        candidate = target.origin + path
        if candidate == endpoint.url:
            continue
        response = _probe(client, candidate)
        if response is not None and response.status_code in (401, 403):
            return candidate
    return None


def doctor_record_body(request_id: str, endpoint: Endpoint) -> bytes:
    """Return the test record: a tiny OpenAI-format exchange, marked with `DOCTOR_PROPERTY`."""
    now = time.time()
    record = LogRecord(
        providerRequest=ProviderRequest(
            url=UNKNOWN_URL,
            body={
                "model": DOCTOR_MODEL,
                "messages": [{"role": "user", "content": "heliconetrace doctor: test record"}],
            },
            meta={
                "Helicone-Request-Id": request_id,
                f"Helicone-Property-{DOCTOR_PROPERTY}": "true",
            },
        ),
        providerResponse=ProviderResponse(
            body={
                "id": f"heliconetrace-doctor-{request_id}",
                "object": "chat.completion",
                "model": DOCTOR_MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            },
            status=200,
            headers={},
        ),
        timing=Timing(startTime=Timestamp.from_epoch(now), endTime=Timestamp.from_epoch(now)),
        provider="OPENAI" if endpoint.server == "jawn" else None,
    )
    return record.to_json()


def _storage_error(response: httpx.Response) -> str | None:
    """Return the error a 2xx response's JSON body names, or None when it names none.

    The worker returns 200 with a body `{"error": ...}` when it fails to store a log.
    """
    if not response.content.lstrip().startswith(b"{"):
        return None
    try:
        parsed = response.json()
    except ValueError:
        return None
    if isinstance(parsed, dict) and parsed.get("error"):
        return str(parsed["error"])[:300]
    return None


def _send_test_record(
    client: httpx.Client,
    settings: Settings,
    endpoint: Endpoint,
    target: Target,
    key: str,
    report: Report,
) -> None:
    report.step("Test record: does the server accept the key and a record?")
    request_id = new_request_id()
    report.line(
        f"   Sending one small test record to {endpoint.url}, with the key. It is marked with "
        f"the property {DOCTOR_PROPERTY}=true (meta key Helicone-Property-{DOCTOR_PROPERTY}) "
        f"and has the request id {request_id}.",
        "   ",
    )
    try:
        response = client.post(
            endpoint.url,
            content=doctor_record_body(request_id, endpoint),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
    except httpx.HTTPError as error:
        problem = redact_text(f"{type(error).__name__}: {error}", (key,))
        raise report.fail(
            f"the request failed: {problem}.",
            f"check that {target.origin} is up, and raise HELICONETRACE_REQUEST_TIMEOUT if "
            "the server is slow to answer.",
        ) from None

    status = response.status_code
    storage_error = _storage_error(response) if 200 <= status < 300 else None
    if 200 <= status < 300 and storage_error is None:
        report.ok(f"the server accepted the test record (HTTP {status}).")
        return
    if status == 401:
        _explain_401(response, settings, target, key, report)
    if status == 403:
        raise report.fail(
            "the server rejected the key for this use (HTTP 403).",
            "check in the Helicone dashboard that the key may write (log) requests.",
        )
    if _is_missing_path(response):
        raise _missing_path(client, settings, endpoint, target, status, report)
    if storage_error is not None:
        raise report.fail(
            f"the server returned HTTP {status} but did not store the record: "
            f"{redact_text(storage_error, (key,))}.",
            "the worker responds this way when its storage fails; retry later.",
        )
    detail = redact_text(f"HTTP {status}: {response.text[:300]}".rstrip(": "), (key,))
    if status == 429:
        raise report.fail(
            "the server is rate-limiting requests (HTTP 429).",
            "wait a minute and run again.",
        )
    if status >= 500:
        raise report.fail(
            f"the server failed with {detail}.",
            "retry later; on a self-hosted server, read its logs for the error.",
        )
    raise report.fail(
        f"the server rejected the test record: {detail}.",
        "run again with the newest heliconetrace; if it persists, report the message.",
    )


# Known causes of a 401 "No API key found": (name, cause, fix). `_matching_causes` returns the
# names of those that the settings show.
_NO_KEY_FOUND_CAUSES: Final = (
    (
        "other-instance",
        "The key comes from another Helicone instance or region. A key works only on the "
        "instance that issued it: cloud keys do not work on a self-hosted server, and a "
        "self-hosted server knows only the keys in its own database.",
        "create a key in the dashboard of the server you send to, or send to the Helicone "
        "that issued the key.",
    ),
    (
        "eu",
        f"The key belongs to an EU account. EU keys work only on {EU_HOST}.",
        f"set {ENV_BASE_URL}=https://{EU_HOST}.",
    ),
    (
        "prefix",
        "The URL has a path prefix, such as /jawn, that sends the request to the wrong place.",
        f"set {ENV_BASE_URL} to the server's root URL, for example "
        f"http://your-host:{JAWN_DEFAULT_PORT}, without /jawn.",
    ),
    (
        "https-plain-port",
        f"The URL says https:// for a plain-HTTP port such as {JAWN_DEFAULT_PORT}; a proxy "
        "in between can turn that into this error.",
        f"use http://your-host:{JAWN_DEFAULT_PORT}.",
    ),
)


def _matching_causes(target: Target, key: str) -> set[str]:
    matching = set()
    if key.startswith(EU_KEY_PREFIX) and target.host != EU_HOST:
        matching.add("eu")
    if "jawn" in target.path.lower().split("/"):
        matching.add("prefix")
    if target.https and target.port == JAWN_DEFAULT_PORT:
        matching.add("https-plain-port")
    return matching


def _explain_401(
    response: httpx.Response, settings: Settings, target: Target, key: str, report: Report
) -> None:
    # The body is read but never printed: jawn echoes the Authorization header in it.
    if "No API key found" not in response.text:
        raise report.fail(
            "the server rejected the key (HTTP 401).",
            f"check {ENV_API_KEY}: copy the key again from the dashboard of the server you "
            "send to.",
        )
    report.line(
        '   FAILED: the server rejected the key (HTTP 401 "No API key found"): it has no such '
        "key. The known causes, each with its fix:",
        "           ",
    )
    matching = _matching_causes(target, key)
    for name, cause, fix in _NO_KEY_FOUND_CAUSES:
        marker = "  <- your settings show this" if name in matching else ""
        report.line(f"   - {cause}{marker}", "     ")
        report.line(f"     fix: {fix}", "          ")
    raise CheckFailed("No API key found")
