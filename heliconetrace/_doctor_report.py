"""The step printer of `python -m heliconetrace doctor`, and the URL parts its steps check."""

from __future__ import annotations

import textwrap
from typing import Final, TextIO
from urllib.parse import urlsplit


class CheckFailed(Exception):
    """A step failed; its explanation is already printed."""


class Report:
    """Print the steps of the check and their results, wrapped to `WIDTH` columns."""

    WIDTH: Final = 100

    def __init__(self, output: TextIO) -> None:
        self._output = output
        self._steps = 0

    def line(self, text: str = "", indent: str = "") -> None:
        """Print `text` wrapped, with `indent` before its second and later lines."""
        if len(text) <= self.WIDTH:
            print(text, file=self._output)
            return
        wrapped = textwrap.fill(
            text,
            width=self.WIDTH,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        print(wrapped, file=self._output)

    def step(self, title: str) -> None:
        self._steps += 1
        self.line()
        self.line(f"{self._steps}. {title}", "   ")

    def ok(self, text: str) -> None:
        self.line(f"   ok: {text}", "       ")

    def note(self, text: str) -> None:
        self.line(f"   note: {text}", "         ")

    def fail(self, problem: str, fix: str) -> CheckFailed:
        """Print a failed step; return the exception that ends the check."""
        self.line(f"   FAILED: {problem}", "           ")
        self.line(f"   fix: {fix}", "        ")
        return CheckFailed(problem)


class Target:
    """The parts of the log URL that the network steps use."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.path = parts.path or "/"
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.address = f"{self.host}:{self.port}"
