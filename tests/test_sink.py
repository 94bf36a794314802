"""The local sink and `python -m heliconetrace show`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

import heliconetrace
from heliconetrace import helicone_logged, helicone_span
from tests.helicone_schema import assert_valid_record

RESPONSE = {
    "model": "gpt-4o-mini-2024-07-18",
    "usage": {"prompt_tokens": 12, "completion_tokens": 51, "total_tokens": 63},
}


@helicone_logged(user="sink-user")
def chat(body: dict[str, Any]) -> dict[str, Any]:
    return RESPONSE


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class TestSink:
    def test_records_appended_as_json_lines(self, clean_configuration: Path) -> None:
        """Without a key, each record is one valid JSON line in the sink file."""
        chat({"model": "gpt-4o-mini"})
        chat({"model": "gpt-4o-mini"})
        assert heliconetrace.flush(5.0)
        records = read_lines(clean_configuration)
        assert len(records) == 2
        for record in records:
            assert_valid_record(record)
        assert records[0]["providerRequest"]["meta"]["Helicone-User-Id"] == "sink-user"
        assert heliconetrace.stats().written_locally == 2

    def test_line_is_the_body_that_would_be_sent(self, clean_configuration: Path) -> None:
        """A sink line has the shape the configured server takes: provider only for jawn."""
        for base_url in ("https://api.worker.helicone.ai", "http://127.0.0.1:8585"):
            heliconetrace.configure(log_file=clean_configuration, base_url=base_url)
            with helicone_span(provider="anthropic", name="x") as span:
                span.set_request({"model": "claude-3-haiku-20240307"})
            assert heliconetrace.flush(5.0)
        worker, jawn = read_lines(clean_configuration)
        assert set(worker) == {"providerRequest", "providerResponse", "timing"}
        assert set(jawn) == {"providerRequest", "providerResponse", "timing", "provider"}
        assert jawn["provider"] == "ANTHROPIC"

    def test_sink_path_announced_once(self, clean_configuration: Path) -> None:
        """The first record written locally logs the path, later ones do not."""
        with capture_logs() as logs:
            chat({"model": "m"})
            chat({"model": "m"})
            assert heliconetrace.flush(5.0)
        announcements = [entry for entry in logs if entry.get("path") == str(clean_configuration)]
        assert len(announcements) == 1
        assert "HELICONE_API_KEY" in announcements[0]["event"]

    def test_environment_sets_sink_path(self, tmp_path: Path, monkeypatch: Any) -> None:
        """HELICONETRACE_LOG_FILE chooses the file."""
        target = tmp_path / "custom" / "out.jsonl"
        monkeypatch.setenv("HELICONETRACE_LOG_FILE", str(target))
        heliconetrace.configure()
        chat({"model": "m"})
        assert heliconetrace.flush(5.0)
        assert len(read_lines(target)) == 1


class TestShowCommand:
    def test_show_prints_latest_records(self, clean_configuration: Path) -> None:
        """show prints time, status, model, user, latency and tokens per record."""
        chat({"model": "gpt-4o-mini"})
        assert heliconetrace.flush(5.0)
        result = subprocess.run(
            [sys.executable, "-m", "heliconetrace", "show", str(clean_configuration)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        header, row = result.stdout.splitlines()[:2]
        assert header.split()[:6] == ["time", "status", "model", "user", "latency_ms", "tokens_in"]
        assert row.split()[2:5] == ["200", "gpt-4o-mini-2024-07-18", "sink-user"]
        assert row.split()[6:8] == ["12", "51"]

    def test_show_limit_keeps_newest(self, clean_configuration: Path) -> None:
        """--limit shows only the newest records."""
        # One worker writes the records in the order the spans ended; several may interleave.
        heliconetrace.configure(log_file=clean_configuration, workers=1)
        for user in ("first", "second", "third"):
            with helicone_span(user=user):
                pass
        assert heliconetrace.flush(5.0)
        result = subprocess.run(
            [sys.executable, "-m", "heliconetrace", "show", str(clean_configuration), "-n", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "third" in result.stdout
        assert "first" not in result.stdout

    def test_show_missing_file_explains(self, tmp_path: Path) -> None:
        """A missing file gives exit status 1 and says where records are written."""
        result = subprocess.run(
            [sys.executable, "-m", "heliconetrace", "show", str(tmp_path / "none.jsonl")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert "No records file" in result.stderr
