"""Static types: mypy sees a decorated handler with the type of the undecorated one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_decorated_types_unchanged() -> None:
    """mypy --strict accepts assert_type on every decorated kind of callable."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            str(ROOT / "tests" / "typing" / "decorated_types.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
