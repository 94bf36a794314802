"""The demo, run as a user runs it: a subprocess on recorded traffic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helicone_schema import assert_valid_record

ROOT = Path(__file__).resolve().parent.parent


def test_demo_logs_every_call(tmp_path: Path) -> None:
    """The demo exits 0 and writes six valid records, one per call, with users and usage."""
    records = tmp_path / "demo.jsonl"
    environment = {**os.environ, "HELICONE_API_KEY": "sk-helicone-must-not-be-used"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--records", str(records)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(lines) == 6
    for record in lines:
        assert_valid_record(record)
    users = [record["providerRequest"]["meta"]["Helicone-User-Id"] for record in lines]
    assert users[0] == "alice"
    assert sorted(users[1:4]) == ["bob", "carol", "dave"]
    assert users[4:] == ["erin", "frank"]
    stream = lines[4]
    assert stream["providerRequest"]["json"]["stream"] is True
    assert stream["providerResponse"]["json"]["usage"]["total_tokens"] == 44
    assert stream["providerResponse"]["textBody"].startswith("data: ")
    assert lines[5]["providerResponse"]["status"] == 429
    assert "sk-replay-not-a-secret" not in records.read_text()
