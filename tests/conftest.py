"""Shared fixtures: a clean configuration per test and a Helicone receiver on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Toolkit faults must fail tests loudly instead of being logged and swallowed.
os.environ["HELICONETRACE_RAISE_INTERNAL_ERRORS"] = "1"

import heliconetrace
from heliconetrace._context import SCOPE, Scope
from heliconetrace._metadata import EMPTY
from tests.receiver import HeliconeReceiver

TEST_KEY = "sk-helicone-test-key-0123456789"

_ENVIRONMENT = (
    "HELICONE_API_KEY",
    "HELICONE_BASE_URL",
    "HELICONETRACE_LOG_URL",
    "HELICONETRACE_ENABLED",
    "HELICONETRACE_LOG_FILE",
    "HELICONETRACE_QUEUE_SIZE",
    "HELICONETRACE_REQUEST_TIMEOUT",
    "HELICONETRACE_SHUTDOWN_TIMEOUT",
    "HELICONETRACE_WORKERS",
    "HELICONETRACE_RETRY_MAX_ATTEMPTS",
    "HELICONETRACE_RETRY_MAX_BACKOFF",
    "HELICONETRACE_SPOOL_DIR",
    "HELICONETRACE_SPOOL_MAX_BYTES",
)


@pytest.fixture(autouse=True)
def clean_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Give each test an empty environment and a local sink in its own folder."""
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    # Tests share one thread, so a plain bind() in one test would reach the next.
    SCOPE.set(Scope(None, EMPTY))
    sink = tmp_path / "records.jsonl"
    heliconetrace.configure(log_file=sink, shutdown_timeout=2.0)
    yield sink
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    heliconetrace.shutdown(2.0)
    heliconetrace.configure(log_file=sink, shutdown_timeout=0.5)


@pytest.fixture
def receiver() -> Iterator[HeliconeReceiver]:
    with HeliconeReceiver(api_key=TEST_KEY) as server:
        yield server
        assert server.rejected == [], f"receiver rejected bodies: {server.rejected}"


@pytest.fixture
def jawn_receiver() -> Iterator[HeliconeReceiver]:
    with HeliconeReceiver(api_key=TEST_KEY, kind="jawn") as server:
        yield server
        assert server.rejected == [], f"receiver rejected bodies: {server.rejected}"


@pytest.fixture
def helicone(receiver: HeliconeReceiver) -> HeliconeReceiver:
    """A worker-style receiver that heliconetrace is configured to send to."""
    heliconetrace.configure(
        api_key=TEST_KEY, log_url=f"{receiver.url}/oai/v1/log", shutdown_timeout=2.0
    )
    return receiver
