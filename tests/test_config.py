"""configure() and the environment: precedence, validation and secrecy of the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import heliconetrace
from heliconetrace._config import SETTINGS, default_log_file, resolve
from heliconetrace._endpoint import resolve_endpoint

ROOT = Path(__file__).resolve().parent.parent


class TestPrecedence:
    def test_environment_read_when_not_configured(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Environment variables set the settings."""
        monkeypatch.setenv("HELICONE_API_KEY", "sk-helicone-env-key-123456")
        monkeypatch.setenv("HELICONE_BASE_URL", "http://127.0.0.1:8585/")
        monkeypatch.setenv("HELICONETRACE_ENABLED", "off")
        settings = resolve({})
        assert settings.api_key is not None
        assert settings.api_key.get_secret_value() == "sk-helicone-env-key-123456"
        assert settings.base_url == "http://127.0.0.1:8585"
        assert settings.enabled is False

    def test_arguments_override_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """configure() arguments win over environment variables."""
        monkeypatch.setenv("HELICONETRACE_ENABLED", "0")
        monkeypatch.setenv("HELICONETRACE_QUEUE_SIZE", "5")
        heliconetrace.configure(enabled=True, queue_size=7)
        assert SETTINGS.get().enabled is True
        assert SETTINGS.get().queue_size == 7

    @pytest.mark.parametrize("word", ["0", "false", "off", "FALSE", " Off "])
    def test_enabled_switched_off(self, monkeypatch: pytest.MonkeyPatch, word: str) -> None:
        """0, false and off switch the toolkit off, in any case."""
        monkeypatch.setenv("HELICONETRACE_ENABLED", word)
        assert resolve({}).enabled is False

    def test_default_log_file_under_state_home(self, tmp_path: Path) -> None:
        """The default sink lives under XDG_STATE_HOME (set per test by conftest)."""
        assert default_log_file() == tmp_path / "state" / "heliconetrace" / "records.jsonl"


class TestValidation:
    @pytest.mark.parametrize(
        ("setting", "value", "message"),
        [
            ("enabled", "maybe", "Invalid value 'maybe' for setting enabled"),
            ("base_url", "api.helicone.ai", "give an http:// or https:// URL"),
            ("queue_size", 0, "whole number of at least 1"),
            ("shutdown_timeout", "soon", "number of seconds"),
            ("workers", "two", "HELICONETRACE_WORKERS"),
        ],
    )
    def test_invalid_value_names_setting_and_fix(
        self, setting: str, value: object, message: str
    ) -> None:
        """An invalid value raises ConfigurationError naming the setting, value and fix."""
        with pytest.raises(heliconetrace.ConfigurationError, match=message):
            heliconetrace.configure(**{setting: value})

    def test_invalid_environment_names_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A bad environment variable is reported with its name."""
        monkeypatch.setenv("HELICONETRACE_SHUTDOWN_TIMEOUT", "-1")
        with pytest.raises(
            heliconetrace.ConfigurationError, match="HELICONETRACE_SHUTDOWN_TIMEOUT"
        ):
            resolve({})

    def test_unknown_setting_lists_valid_ones(self) -> None:
        """A misspelled setting is rejected with the list of valid names."""
        with pytest.raises(heliconetrace.ConfigurationError, match="Unknown setting 'apikey'"):
            heliconetrace.configure(apikey="x")

    def test_invalid_value_keeps_previous_settings(self) -> None:
        """A failed configure() leaves the configuration as it was."""
        heliconetrace.configure(queue_size=11)
        with pytest.raises(heliconetrace.ConfigurationError):
            heliconetrace.configure(queue_size=-1)
        assert SETTINGS.get().queue_size == 11


class TestFirstUse:
    def test_invalid_environment_never_fails_handler(self, tmp_path: Path) -> None:
        """With a bad variable and no configure() call, handlers run and the error is logged."""
        script = (
            "from heliconetrace import helicone_logged\n"
            "@helicone_logged\n"
            "def handler():\n"
            "    return {'ok': True}\n"
            "print('result', handler(), handler())\n"
        )
        environment = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HELICONETRACE_ENABLED": "maybe",
            "HELICONETRACE_QUEUE_SIZE": "abc",
            "XDG_STATE_HOME": str(tmp_path),
        }
        environment.pop("HELICONETRACE_RAISE_INTERNAL_ERRORS", None)
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            env=environment,
        )
        assert result.returncode == 0, result.stderr
        assert "result {'ok': True} {'ok': True}" in result.stdout
        lines = [line for line in result.stdout.splitlines() if "invalid environment" in line]
        assert len(lines) == 2
        assert "variable=HELICONETRACE_ENABLED" in lines[0]
        assert "variable=HELICONETRACE_QUEUE_SIZE" in lines[1]

    def test_argument_overrides_invalid_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A configure() argument wins even where the variable it overrides is invalid."""
        monkeypatch.setenv("HELICONETRACE_ENABLED", "maybe")
        heliconetrace.configure(enabled=True)
        assert SETTINGS.get().enabled is True


class TestSecrecy:
    def test_key_not_in_repr(self) -> None:
        """The settings repr hides the key."""
        settings = resolve({"api_key": "sk-helicone-secret-value-999"})
        assert "secret-value-999" not in repr(settings)
        assert "secret-value-999" not in str(settings)

    def test_key_not_in_error_message(self) -> None:
        """An invalid key is reported without its value."""
        with pytest.raises(heliconetrace.ConfigurationError) as caught:
            heliconetrace.configure(api_key="   ")
        assert "<hidden>" in str(caught.value)


class TestEndpoint:
    @pytest.mark.parametrize(
        ("base_url", "provider", "url", "server"),
        [
            (
                "https://api.worker.helicone.ai",
                "openai",
                "https://api.worker.helicone.ai/oai/v1/log",
                "worker",
            ),
            (
                "https://api.worker.helicone.ai",
                "anthropic",
                "https://api.worker.helicone.ai/anthropic/v1/log",
                "worker",
            ),
            (
                "https://api.worker.helicone.ai",
                "groq",
                "https://api.worker.helicone.ai/custom/v1/log",
                "worker",
            ),
            (
                "https://api.worker.helicone.ai",
                None,
                "https://api.worker.helicone.ai/oai/v1/log",
                "worker",
            ),
            ("https://api.hconeai.com", "openai", "https://api.hconeai.com/oai/v1/log", "worker"),
            (
                "https://api.helicone.ai",
                "openai",
                "https://api.helicone.ai/v1/trace/custom/log",
                "jawn",
            ),
            (
                "https://eu.api.helicone.ai",
                "anthropic",
                "https://eu.api.helicone.ai/v1/trace/custom/log",
                "jawn",
            ),
            (
                "http://localhost:8585",
                "openai",
                "http://localhost:8585/v1/trace/custom/log",
                "jawn",
            ),
            (
                "http://localhost:8585/v1/trace",
                None,
                "http://localhost:8585/v1/trace/custom/log",
                "jawn",
            ),
        ],
    )
    def test_path_follows_server_kind(
        self, base_url: str, provider: str | None, url: str, server: str
    ) -> None:
        """The worker gets its per-provider path; jawn gets /v1/trace/custom/log."""
        endpoint = resolve_endpoint(base_url, None, provider)
        assert endpoint.url == url
        assert endpoint.server == server

    def test_log_url_overrides_choice(self) -> None:
        """A full log URL is used as it is."""
        endpoint = resolve_endpoint(
            "https://api.worker.helicone.ai", "http://127.0.0.1:9/v1/trace/custom/log", "openai"
        )
        assert endpoint.url == "http://127.0.0.1:9/v1/trace/custom/log"
        assert endpoint.server == "jawn"
