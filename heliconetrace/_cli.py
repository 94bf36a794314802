"""`python -m heliconetrace`: look at records written by the local sink.

    python -m heliconetrace show [PATH] [--limit N]

prints the latest records (time, status, model, user, latency, tokens), oldest first.

    python -m heliconetrace doctor

checks the configured Helicone connection step by step and sends one test record (see
`heliconetrace._doctor`). The exit status is 0 only when the record was accepted.

    python -m heliconetrace replay DIR [--timeout SECONDS]

delivers the records in a spool directory (see `heliconetrace._replay`) and removes them; the
exit status is 0 when none is left.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from heliconetrace._config import ENV_LOG_FILE, SETTINGS
from heliconetrace._errors import ConfigurationError

_COLUMNS = (
    "time",
    "status",
    "model",
    "user",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "request_id",
)


def _epoch_ms(point: object) -> int | None:
    if isinstance(point, dict):
        seconds, milliseconds = point.get("seconds"), point.get("milliseconds")
        if isinstance(seconds, int) and isinstance(milliseconds, int):
            return seconds * 1000 + milliseconds
    return None


def _tokens(response: dict[str, Any]) -> tuple[str, str]:
    """Return (input, output) token counts from an OpenAI- or Anthropic-shaped usage block."""
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return "-", "-"
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return (
        str(prompt) if prompt is not None else "-",
        str(completion) if completion is not None else "-",
    )


def summarize(record: dict[str, Any]) -> dict[str, str]:
    """Return the columns `show` prints for one record."""
    request = record.get("providerRequest", {})
    response = record.get("providerResponse", {})
    meta = request.get("meta", {})
    timing = record.get("timing", {})
    start, end = _epoch_ms(timing.get("startTime")), _epoch_ms(timing.get("endTime"))
    response_json = response.get("json") or {}
    tokens_in, tokens_out = _tokens(response_json)
    started = "-"
    if start is not None:
        moment = datetime.datetime.fromtimestamp(start / 1000, tz=datetime.timezone.utc)
        started = moment.strftime("%Y-%m-%d %H:%M:%S")
    model = (
        meta.get("Helicone-Model-Override")
        or response_json.get("model")
        or request.get("json", {}).get("model")
        or "-"
    )
    return {
        "time": started,
        "status": str(response.get("status", "-")),
        "model": str(model),
        "user": meta.get("Helicone-User-Id", "-"),
        "latency_ms": str(end - start) if start is not None and end is not None else "-",
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "request_id": meta.get("Helicone-Request-Id", "-"),
    }


def read_latest(path: Path, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Return the last `limit` records of a sink file and the count of unreadable lines."""
    latest: deque[dict[str, Any]] = deque(maxlen=limit)
    unreadable = 0
    with path.open("rb") as file:
        for line in file:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                unreadable += 1
                continue
            if isinstance(record, dict):
                latest.append(record)
            else:
                unreadable += 1
    return list(latest), unreadable


def show(path: Path, limit: int, output: TextIO) -> int:
    if not path.exists():
        print(
            f"No records file at {path}. Records are written there when no Helicone API key is "
            f"set; set {ENV_LOG_FILE} or pass a path.",
            file=sys.stderr,
        )
        return 1
    records, unreadable = read_latest(path, limit)
    rows = [summarize(record) for record in records]
    widths = {
        column: max([len(column), *(len(row[column]) for row in rows)]) for column in _COLUMNS
    }
    print("  ".join(column.ljust(widths[column]) for column in _COLUMNS), file=output)
    for row in rows:
        print("  ".join(row[column].ljust(widths[column]) for column in _COLUMNS), file=output)
    print(f"{len(rows)} records shown from {path}", file=output)
    if unreadable:
        print(f"{unreadable} lines could not be read as JSON records", file=output)
    return 0


def doctor() -> int:
    """Run `python -m heliconetrace doctor` with the settings of this process."""
    from heliconetrace._doctor import run_doctor

    try:
        settings = SETTINGS.get()
    except ConfigurationError as error:
        print(f"heliconetrace doctor: {error}", file=sys.stderr)
        return 1
    return run_doctor(settings, sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m heliconetrace", description="Inspect heliconetrace's local records."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    show_parser = commands.add_parser("show", help="print the latest records of a sink file")
    show_parser.add_argument(
        "path",
        nargs="?",
        type=Path,
        help=f"records file (default: {ENV_LOG_FILE}, or the default sink path)",
    )
    show_parser.add_argument(
        "--limit", "-n", type=int, default=20, help="how many of the latest records (default 20)"
    )
    commands.add_parser(
        "doctor",
        help="check the connection to Helicone step by step and send one test record",
    )
    replay_parser = commands.add_parser(
        "replay", help="deliver the records of a spool directory to Helicone, then remove them"
    )
    replay_parser.add_argument("directory", type=Path, help="the spool directory")
    replay_parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to keep trying while Helicone fails (default 60); records not delivered "
        "stay in the spool",
    )
    arguments = parser.parse_args(argv)
    if arguments.command == "doctor":
        return doctor()
    if arguments.command == "replay":
        from heliconetrace._replay import replay_command

        return replay_command(arguments.directory, arguments.timeout, sys.stdout)

    if arguments.limit < 1:
        parser.error(f"--limit must be at least 1, not {arguments.limit}")
    path = arguments.path if arguments.path is not None else SETTINGS.get().log_file
    return show(path, arguments.limit, sys.stdout)
