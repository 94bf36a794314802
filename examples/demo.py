"""The main job: a chat service logs every call, on real recorded provider traffic, offline.

Run it with `python examples/demo.py`. It starts an OpenAI-compatible server on 127.0.0.1 that
replays recorded provider responses, sends chat requests through `ChatService` with the real
`openai` SDK (plain, async, streamed, and one that fails), and shows what heliconetrace logged.

No Helicone account is needed: the demo switches the API key off, so records go to a local
file, each line exactly the body that would be posted to Helicone. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import openai
import structlog
from chat_service import ChatService
from replay_server import ReplayServer

import heliconetrace
from heliconetrace._cli import show

QUESTION = [{"role": "user", "content": "What's the weather like?"}]


def run_requests(service: ChatService) -> None:
    print("1. plain call")
    completion = service.chat({"model": "gpt-4o-mini", "messages": QUESTION}, user="alice")
    print(f"   answer: {completion.choices[0].message.content[:60]}...")

    print("2. three async calls at once, one user each")

    async def three_users() -> list[Any]:
        calls = [
            service.chat_async({"model": "gpt-4o-mini", "messages": QUESTION}, user=user)
            for user in ("bob", "carol", "dave")
        ]
        return await asyncio.gather(*calls)

    for completion in asyncio.run(three_users()):
        print(f"   answer id: {completion.id}")

    print("3. streamed call, relayed chunk by chunk")
    body = {
        "model": "gpt-4o-2024-08-06",
        "messages": [{"role": "user", "content": "What's the weather like in SF?"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    text = []
    for chunk in service.chat_stream(body, user="erin"):
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
    print(f"   streamed: {''.join(text)[:60]}...")

    print("4. a call the provider rejects (insufficient quota, HTTP 429)")
    try:
        service.chat({"model": "replay-429", "messages": QUESTION}, user="frank")
    except openai.RateLimitError as error:
        print(f"   the service saw: {type(error).__name__} {error.status_code}")
        print("   (its latency includes the openai SDK's own retries before it gave up)")


def check_records(path: Path) -> int:
    """Print a one-line verdict per record; return the number of records that look wrong."""
    problems = 0
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in records:
        meta = record["providerRequest"]["meta"]
        response = record["providerResponse"]
        has_usage = "usage" in response["json"]
        user = meta.get("Helicone-User-Id")
        if user is None or "Helicone-Property-Virtual-Key" not in meta:
            problems += 1
        if response["status"] == 200 and not has_usage:
            problems += 1
    expected = 6
    if len(records) != expected:
        print(f"expected {expected} records, found {len(records)}")
        problems += 1
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--records",
        type=Path,
        help="file to write the records to (default: a new temporary folder)",
    )
    arguments = parser.parse_args()
    records = arguments.records
    if records is None:
        records = Path(tempfile.mkdtemp(prefix="heliconetrace-demo-")) / "records.jsonl"
    records.unlink(missing_ok=True)

    # api_key=None overrides HELICONE_API_KEY, so the demo never sends to a real Helicone.
    heliconetrace.configure(api_key=None, log_file=records)
    # heliconetrace logs through structlog; send those lines to stderr, away from the output.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

    with ReplayServer() as gateway:
        print(f"Replaying recorded provider traffic at {gateway.url}\n")
        service = ChatService(gateway.url, "sk-replay-not-a-secret", virtual_key="openai-demo-vk")
        run_requests(service)

    if not heliconetrace.flush(10.0):
        print("heliconetrace did not finish writing records in 10 seconds", file=sys.stderr)
        return 1

    print(f"\nWhat heliconetrace logged (python -m heliconetrace show {records}):\n")
    show(records, limit=20, output=sys.stdout)
    problems = check_records(records)
    if problems:
        print(f"\n{problems} problems found in the records", file=sys.stderr)
        return 1
    print(
        "\nEvery call was logged with its user, virtual key and status, and every successful "
        "one with its token usage."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
