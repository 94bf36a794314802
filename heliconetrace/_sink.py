"""The embedded local sink: records appended to a JSON Lines file when no API key is set.

Each line is exactly the body that would have been posted to Helicone, so a file written on a
machine with no account can be read with `python -m heliconetrace show` or replayed later.
"""

from __future__ import annotations

import threading
from pathlib import Path

from heliconetrace._diagnostics import info_once


class LocalSink:
    """Append serialized records to one file, one per line, from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, body: bytes) -> None:
        """Append one record; raises OSError when the file cannot be written."""
        info_once(
            f"sink:{self.path}",
            "heliconetrace has no Helicone API key, so records go to a local file; "
            "set HELICONE_API_KEY to send them to Helicone",
            path=str(self.path),
            show_command=f"python -m heliconetrace show {self.path}",
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as file:
                file.write(body + b"\n")
