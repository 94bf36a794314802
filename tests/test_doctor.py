"""`python -m heliconetrace doctor`, run as a subprocess against servers on 127.0.0.1.

Each test sets up one way the connection fails (or works) and checks the exit status and the
explanation the doctor prints. Host names are 127.0.0.1, or end in the reserved `.invalid` TLD,
which never resolves.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from heliconetrace._doctor import Target, _matching_causes
from tests.conftest import TEST_KEY
from tests.receiver import HeliconeReceiver

REPO = Path(__file__).resolve().parent.parent
# A subprocess that hangs would take the 60 s pytest timeout; a working one takes about a second.
DEADLINE = 30.0
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
# Port 1 (tcpmux) is closed on ordinary machines, so a run without its own URL fails locally.
CLOSED_URL = "http://127.0.0.1:1"


class Run:
    """The result of one `python -m heliconetrace doctor` run."""

    def __init__(self, completed: subprocess.CompletedProcess[str], seconds: float) -> None:
        self.status = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.seconds = seconds
        # The doctor wraps long lines; tests match the text with single spaces.
        self.text = " ".join(completed.stdout.split())


def run_doctor(tmp_path: Path, **environment: str) -> Run:
    """Run the doctor with only the given heliconetrace settings in its environment.

    The base URL defaults to a closed port of 127.0.0.1, never to Helicone's cloud host.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("HELICONE_", "HELICONETRACE_"))
        and name.lower() not in _PROXY_VARIABLES
    }
    env["PYTHONPATH"] = str(REPO)
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["HELICONETRACE_REQUEST_TIMEOUT"] = "2"
    env["HELICONE_BASE_URL"] = CLOSED_URL
    env.update(environment)
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "heliconetrace", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        check=False,
    )
    return Run(completed, time.monotonic() - started)


def authorized_requests(receiver: HeliconeReceiver) -> int:
    """Count the requests that carried an Authorization header (only the test record may)."""
    return sum(1 for request in receiver.requests if "authorization" in request.headers)


@pytest.fixture
def other_jawn() -> Iterator[HeliconeReceiver]:
    """A jawn receiver whose database has another key than TEST_KEY."""
    with HeliconeReceiver(api_key="sk-helicone-other-instance-key", kind="jawn") as server:
        yield server
        assert server.rejected == [], f"receiver rejected bodies: {server.rejected}"


class TestNoKey:
    """No API key configured."""

    def test_explains_local_file(self, tmp_path: Path) -> None:
        """Without a key the doctor names the local file and exits non-zero."""
        run = run_doctor(tmp_path)
        expected_file = tmp_path / "state" / "heliconetrace" / "records.jsonl"
        assert run.status == 1
        assert "No API key is set" in run.text
        assert str(expected_file) in run.text
        assert "HELICONE_API_KEY" in run.text

    def test_sends_nothing(self, tmp_path: Path, jawn_receiver: HeliconeReceiver) -> None:
        """Without a key nothing is sent, even with a base URL set."""
        run = run_doctor(tmp_path, HELICONE_BASE_URL=jawn_receiver.url)
        assert run.status == 1
        assert jawn_receiver.requests == []


class TestUnreachable:
    """Failures before HTTP: DNS, TCP and TLS."""

    def test_connection_refused(self, tmp_path: Path) -> None:
        """A closed port is reported as connection refused, with the port to check."""
        with socket.socket() as closed:
            # Bound but not listening: a connection to it is refused, and no one else takes it.
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
            run = run_doctor(
                tmp_path, HELICONE_API_KEY=TEST_KEY, HELICONE_BASE_URL=f"http://127.0.0.1:{port}"
            )
        assert run.status == 1
        assert f"connection refused on 127.0.0.1:{port}" in run.text
        assert "correct the port in HELICONE_BASE_URL" in run.text

    def test_invalid_port(self, tmp_path: Path) -> None:
        """A port outside 0-65535 is reported as an invalid URL, naming the setting."""
        run = run_doctor(
            tmp_path, HELICONE_API_KEY=TEST_KEY, HELICONE_BASE_URL="http://127.0.0.1:99999"
        )
        assert run.status == 1
        assert "is invalid: Port out of range" in run.text
        assert "fix: correct HELICONE_BASE_URL." in run.text

    def test_unresolvable_host(self, tmp_path: Path) -> None:
        """A host name that does not resolve stops the check at the DNS step."""
        run = run_doctor(
            tmp_path,
            HELICONE_API_KEY=TEST_KEY,
            HELICONE_BASE_URL="https://heliconetrace-doctor.invalid",
        )
        assert run.status == 1
        assert "heliconetrace-doctor.invalid does not resolve" in run.text
        assert "TCP:" not in run.text

    def test_tls_on_plain_http(self, tmp_path: Path, jawn_receiver: HeliconeReceiver) -> None:
        """https:// on a plain-HTTP port is recognised, with the http:// URL as the fix."""
        plain_url = jawn_receiver.url
        run = run_doctor(
            tmp_path,
            HELICONE_API_KEY=TEST_KEY,
            HELICONE_BASE_URL=plain_url.replace("http://", "https://"),
        )
        assert run.status == 1
        assert "speaks plain HTTP, not TLS" in run.text
        assert f"HELICONE_BASE_URL={plain_url}" in run.text
        assert jawn_receiver.records == []

    def test_tls_deadline(self, tmp_path: Path, jawn_receiver: HeliconeReceiver) -> None:
        """A TLS handshake with a plain-HTTP server ends within the deadline, although the
        server may wait for the end of a request line that never comes."""
        run = run_doctor(
            tmp_path,
            HELICONE_API_KEY=TEST_KEY,
            HELICONE_BASE_URL=jawn_receiver.url.replace("http://", "https://"),
            HELICONETRACE_REQUEST_TIMEOUT="1",
        )
        assert run.status == 1
        assert run.seconds < DEADLINE


class TestLogPath:
    """Servers that do not serve the configured log path."""

    def test_worker_path_on_jawn(self, tmp_path: Path, jawn_receiver: HeliconeReceiver) -> None:
        """A worker path on a jawn server names the jawn path and the setting that picks it."""
        run = run_doctor(
            tmp_path,
            HELICONE_API_KEY=TEST_KEY,
            HELICONETRACE_LOG_URL=f"{jawn_receiver.url}/oai/v1/log",
        )
        assert run.status == 1
        assert "the server has no /oai/v1/log (HTTP 404)" in run.text
        assert "It takes /v1/trace/custom/log, so it is a jawn server" in run.text
        assert (
            f"set HELICONE_BASE_URL={jawn_receiver.url} and unset HELICONETRACE_LOG_URL" in run.text
        )

    def test_probes_without_key(self, tmp_path: Path, jawn_receiver: HeliconeReceiver) -> None:
        """The path probes carry no key, and no record is sent when the path is missing."""
        run_doctor(
            tmp_path,
            HELICONE_API_KEY=TEST_KEY,
            HELICONETRACE_LOG_URL=f"{jawn_receiver.url}/oai/v1/log",
        )
        assert len(jawn_receiver.requests) == 2
        assert authorized_requests(jawn_receiver) == 0
        assert jawn_receiver.records == []

    def test_jawn_prefix(self, tmp_path: Path, jawn_receiver: HeliconeReceiver) -> None:
        """A /jawn prefix in the URL is reported, with the root URL as the fix."""
        run = run_doctor(
            tmp_path,
            HELICONE_API_KEY=TEST_KEY,
            HELICONE_BASE_URL=f"{jawn_receiver.url}/jawn",
        )
        assert run.status == 1
        assert "the server has no /jawn/v1/trace/custom/log" in run.text
        assert "without the prefix in the URL" in run.text
        assert f"set HELICONE_BASE_URL={jawn_receiver.url}." in run.text

    def test_jawn_path_on_worker(self, tmp_path: Path, receiver: HeliconeReceiver) -> None:
        """A jawn path on a worker names the worker path as the log URL to set."""
        run = run_doctor(
            tmp_path,
            HELICONE_API_KEY=TEST_KEY,
            HELICONETRACE_LOG_URL=f"{receiver.url}/v1/trace/custom/log",
        )
        assert run.status == 1
        assert "the server has no /v1/trace/custom/log (HTTP 400)" in run.text
        assert "so it is a worker" in run.text
        assert f"set HELICONETRACE_LOG_URL={receiver.url}/oai/v1/log" in run.text


class TestKey:
    """The test record with a key the server does not accept."""

    def test_no_api_key_found(self, tmp_path: Path, other_jawn: HeliconeReceiver) -> None:
        """A 401 "No API key found" lists the known causes, each with a fix."""
        run = run_doctor(tmp_path, HELICONE_API_KEY=TEST_KEY, HELICONE_BASE_URL=other_jawn.url)
        assert run.status == 1
        assert 'HTTP 401 "No API key found"' in run.text
        assert "another Helicone instance or region" in run.text
        assert "EU keys work only on eu.api.helicone.ai" in run.text
        assert "path prefix, such as /jawn" in run.text
        assert "https:// for a plain-HTTP port" in run.text
        fixes = [line for line in run.stdout.splitlines() if line.lstrip().startswith("fix:")]
        assert len(fixes) == 4

    def test_key_never_printed(self, tmp_path: Path, other_jawn: HeliconeReceiver) -> None:
        """The key appears in neither output, although the 401 body echoes it."""
        run = run_doctor(tmp_path, HELICONE_API_KEY=TEST_KEY, HELICONE_BASE_URL=other_jawn.url)
        assert TEST_KEY not in run.stdout
        assert TEST_KEY not in run.stderr

    def test_one_record_sent(self, tmp_path: Path, other_jawn: HeliconeReceiver) -> None:
        """Only the test record carries the key: one request in all."""
        run_doctor(tmp_path, HELICONE_API_KEY=TEST_KEY, HELICONE_BASE_URL=other_jawn.url)
        assert authorized_requests(other_jawn) == 1

    def test_eu_key_flagged(self, tmp_path: Path, other_jawn: HeliconeReceiver) -> None:
        """An EU key on another host marks the EU cause as the one the settings show."""
        run = run_doctor(
            tmp_path,
            HELICONE_API_KEY="sk-helicone-eu-abcdefg-1234567",
            HELICONE_BASE_URL=other_jawn.url,
        )
        flagged = re.findall(r"- ([^-]*?) <- your settings show this", run.text)
        assert flagged == [
            "The key belongs to an EU account. EU keys work only on eu.api.helicone.ai."
        ]

    def test_causes_from_settings(self) -> None:
        """Settings that show a cause are matched: EU key, /jawn prefix, https on 8585."""
        target = Target("https://127.0.0.1:8585/jawn/v1/trace/custom/log")
        causes = _matching_causes(target, "sk-helicone-eu-abcdefg")
        assert causes == {"eu", "prefix", "https-plain-port"}

    def test_no_causes_for_plain_setup(self) -> None:
        """A plain self-hosted URL and an ordinary key show none of the causes."""
        target = Target("http://127.0.0.1:8585/v1/trace/custom/log")
        assert _matching_causes(target, TEST_KEY) == set()


class TestServerFailures:
    """The test record reaches the server, which fails to store it."""

    def test_error_in_200(self, tmp_path: Path, receiver: HeliconeReceiver) -> None:
        """A worker's 200 with an error body is a failure, not an accepted record."""
        receiver.queue_modes("ok", "error-200")
        run = run_doctor(
            tmp_path, HELICONE_API_KEY=TEST_KEY, HELICONETRACE_LOG_URL=f"{receiver.url}/oai/v1/log"
        )
        assert run.status == 1
        assert "returned HTTP 200 but did not store the record" in run.text

    def test_server_error(self, tmp_path: Path, receiver: HeliconeReceiver) -> None:
        """A 500 is reported as a server error."""
        receiver.queue_modes("ok", "500")
        run = run_doctor(
            tmp_path, HELICONE_API_KEY=TEST_KEY, HELICONETRACE_LOG_URL=f"{receiver.url}/oai/v1/log"
        )
        assert run.status == 1
        assert "the server failed with HTTP 500" in run.text

    def test_hang(self, tmp_path: Path, receiver: HeliconeReceiver) -> None:
        """A server that never responds to the record ends the check within the deadline."""
        receiver.queue_modes("ok", "hang")
        run = run_doctor(
            tmp_path,
            HELICONE_API_KEY=TEST_KEY,
            HELICONETRACE_LOG_URL=f"{receiver.url}/oai/v1/log",
            HELICONETRACE_REQUEST_TIMEOUT="1",
        )
        assert run.status == 1
        assert "the request failed: ReadTimeout" in run.text
        assert run.seconds < DEADLINE

    def test_invalid_setting(self, tmp_path: Path) -> None:
        """An invalid setting is named in the output, with a non-zero exit."""
        run = run_doctor(tmp_path, HELICONE_API_KEY=TEST_KEY, HELICONETRACE_REQUEST_TIMEOUT="soon")
        assert run.status == 1
        assert "HELICONETRACE_REQUEST_TIMEOUT" in run.stdout + run.stderr


class TestAccepted:
    """A server that accepts the test record."""

    def test_jawn(self, tmp_path: Path, jawn_receiver: HeliconeReceiver) -> None:
        """A jawn server that stores the record gives exit status 0."""
        run = run_doctor(tmp_path, HELICONE_API_KEY=TEST_KEY, HELICONE_BASE_URL=jawn_receiver.url)
        assert run.status == 0, run.stdout
        assert "the server accepted the test record (HTTP 200)" in run.text
        assert "Result: records reach Helicone" in run.text

    def test_record_marked(self, tmp_path: Path, jawn_receiver: HeliconeReceiver) -> None:
        """The one record carries the doctor property and the request id the doctor printed."""
        run = run_doctor(tmp_path, HELICONE_API_KEY=TEST_KEY, HELICONE_BASE_URL=jawn_receiver.url)
        records = jawn_receiver.wait_for(1)
        meta = records[0]["providerRequest"]["meta"]
        assert len(records) == 1
        assert meta["Helicone-Property-Heliconetrace-Doctor"] == "true"
        assert f"request id {meta['Helicone-Request-Id']}" in run.text
        assert records[0]["provider"] == "OPENAI"

    def test_announced_before_sending(
        self, tmp_path: Path, jawn_receiver: HeliconeReceiver
    ) -> None:
        """The doctor announces the marked test record before it prints the result."""
        run = run_doctor(tmp_path, HELICONE_API_KEY=TEST_KEY, HELICONE_BASE_URL=jawn_receiver.url)
        announced = run.text.index("Sending one small test record")
        accepted = run.text.index("accepted the test record")
        assert announced < accepted
        assert "Heliconetrace-Doctor=true" in run.text[announced:accepted]

    def test_worker(self, tmp_path: Path, receiver: HeliconeReceiver) -> None:
        """A worker log URL works too, and its record has no provider field."""
        run = run_doctor(
            tmp_path, HELICONE_API_KEY=TEST_KEY, HELICONETRACE_LOG_URL=f"{receiver.url}/oai/v1/log"
        )
        records = receiver.wait_for(1)
        assert run.status == 0, run.stdout
        assert "provider" not in records[0]
