"""Delivery: throughput, memory while Helicone is down, exit time, and handler latency.

    python benchmarks/bench_delivery.py [--records 20000] [--calls 100000] [--latency-calls 20000]

Each part runs against receivers in their own processes, so they do not compete with the
measured code for the GIL:

1. Throughput: `--records` records logged at once from one process and delivered to
   benchmarks/fast_receiver.py, beside the receiver's own limit measured in the same run with a
   bare httpx loop (one client shared by as many threads as the exporter has workers).
2. Memory: RSS growth of a fresh process after `--calls` handler calls with the receiver down
   (a closed port), without and with a spool directory. Target: at most 20 MB.
3. Exit: seconds from the end of a script to the end of its process, with the receiver down or
   hanging, with shutdown_timeout = 3 s. Target: the deadline plus 0.5 s at most.
4. Latency: p50 and p99 of one decorated handler call with the receiver fast, slow (1 s per
   response) and down, with a 50 microsecond sleep between calls. Target: the same whatever the
   receiver does.

This script also serves the slow and hanging receivers (`--serve slow|hang`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from common import HERE, fast_receiver, machine

import heliconetrace
from heliconetrace import helicone_logged
from heliconetrace._config import DEFAULT_WORKERS

ROOT = HERE.parent
KEY = "sk-helicone-benchmark"
DOWN_URL = "http://127.0.0.1:9/oai/v1/log"
REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}
RESPONSE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}
SHUTDOWN_TIMEOUT = 3.0


# Receivers that misbehave, served by this script in a process of its own.


async def _serve(mode: str, delay: float) -> None:
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                if mode == "hang":
                    held.append(writer)
                    await asyncio.Event().wait()
                await asyncio.sleep(delay)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


@contextmanager
def misbehaving_receiver(mode: str, delay: float = 1.0) -> Iterator[str]:
    """Run this script as a slow or hanging receiver; yield its base URL."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, "--delay", str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def received(url: str) -> int:
    with urllib.request.urlopen(f"{url}/count", timeout=10) as answer:
        return int(answer.read())


# 1. Throughput


def record_body() -> bytes:
    """Return one real record, as the exporter would post it (taken from the local file)."""
    with tempfile.TemporaryDirectory() as folder:
        sink = Path(folder) / "records.jsonl"
        heliconetrace.configure(log_file=sink)
        handler(REQUEST)
        heliconetrace.flush(10)
        return sink.read_bytes().splitlines()[0]


@helicone_logged
def handler(body: dict[str, object] | None = None) -> dict[str, object]:
    return RESPONSE


def bare_httpx_rate(url: str, body: bytes, count: int, threads: int) -> float:
    """Records per second of `threads` threads posting with one shared httpx.Client."""
    client = httpx.Client(
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        limits=httpx.Limits(max_connections=threads, max_keepalive_connections=threads),
    )
    share = count // threads

    def post_share() -> None:
        for _ in range(share):
            client.post(f"{url}/oai/v1/log", content=body)

    workers = [threading.Thread(target=post_share) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    client.close()
    return share * threads / elapsed


def exporter_rate(url: str, count: int) -> tuple[float, heliconetrace.ExporterStats]:
    heliconetrace.configure(api_key=KEY, log_url=f"{url}/oai/v1/log", queue_size=count + 1)
    started = time.perf_counter()
    for _ in range(count):
        handler(REQUEST)
    if not heliconetrace.flush(300):
        raise SystemExit("delivery did not finish within 300 s")
    elapsed = time.perf_counter() - started
    return count / elapsed, heliconetrace.stats()


def measure_throughput(records: int) -> list[str]:
    body = record_body()
    workers = DEFAULT_WORKERS
    lines = []
    with fast_receiver() as url:
        bare_httpx_rate(url, body, 500, workers)  # warm-up
        bare = bare_httpx_rate(url, body, records, workers)
        rate, stats = exporter_rate(url, records)
        total = received(url)
    if stats.delivered != records or stats.dropped or stats.failed:
        raise SystemExit(f"records were lost: {stats}")
    lines.append(f"bare httpx loop ({workers} threads, one client): {bare:8.0f} records/s")
    lines.append(f"heliconetrace ({workers} workers):                {rate:8.0f} records/s")
    lines.append(f"ratio heliconetrace / bare httpx:               {rate / bare:8.2f}")
    lines.append(f"records the receiver counted: {total} (bare loop, warm-up and exporter)")
    return lines


# 2. Memory with Helicone down

MEMORY_SCRIPT = """
import gc
import json
import sys
import heliconetrace
from heliconetrace import helicone_logged
from heliconetrace._config import DEFAULT_WORKERS

def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

@helicone_logged
def handler(body):
    return {response!r}

settings = dict(api_key={key!r}, log_url={url!r}, shutdown_timeout=0.5)
if {spool!r}:
    settings["spool_dir"] = {spool!r}
heliconetrace.configure(**settings)
for _ in range(1000):
    handler({request!r})
gc.collect()
before = rss_kib()
for _ in range({calls}):
    handler({request!r})
gc.collect()
after = rss_kib()
stats = heliconetrace.stats()
print(json.dumps({{"growth_kib": after - before, "stats": stats.model_dump()}}))
"""


def run_script(script: str) -> tuple[float, str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return elapsed, result.stdout


def measure_memory(calls: int) -> list[str]:
    lines = []
    for label, use_spool in (("without spool", False), ("with spool", True)):
        with tempfile.TemporaryDirectory() as folder:
            script = MEMORY_SCRIPT.format(
                response=RESPONSE,
                request=REQUEST,
                key=KEY,
                url=DOWN_URL,
                spool=str(Path(folder) / "spool") if use_spool else "",
                calls=calls,
            )
            _, output = run_script(script)
        (line,) = [line for line in output.splitlines() if line.startswith("{")]
        result = json.loads(line)
        stats = result["stats"]
        lines.append(
            f"{label:14}: RSS growth {result['growth_kib'] / 1024:6.1f} MB after {calls} calls; "
            f"queued {stats['queue_depth']}, spooled {stats['spooled']}, "
            f"dropped {stats['dropped']} {stats['dropped_by_reason']}"
        )
    return lines


# 3. Exit time

EXIT_SCRIPT = """
import time
import heliconetrace
from heliconetrace import helicone_logged
from heliconetrace._config import DEFAULT_WORKERS

@helicone_logged
def handler(body):
    return {response!r}

settings = dict(api_key={key!r}, log_url={url!r}, shutdown_timeout={timeout})
if {spool!r}:
    settings["spool_dir"] = {spool!r}
heliconetrace.configure(**settings)
for _ in range({records}):
    handler({request!r})
time.sleep(0.5)  # let the first POSTs fail or hang
print("END", time.monotonic(), flush=True)
"""


def exit_seconds(url: str, spool: str, records: int) -> float:
    """Seconds from the script's last statement to the end of its process."""
    script = EXIT_SCRIPT.format(
        response=RESPONSE,
        request=REQUEST,
        key=KEY,
        url=url,
        timeout=SHUTDOWN_TIMEOUT,
        spool=spool,
        records=records,
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    end_of_script = None
    for line in process.stdout:
        if line.startswith("END "):
            # time.monotonic() reads CLOCK_MONOTONIC on Linux, one clock for all processes.
            end_of_script = float(line.split()[1])
    process.wait(60)
    exited = time.monotonic()
    if end_of_script is None:
        raise SystemExit("the exit script did not finish")
    return exited - end_of_script


def measure_exit() -> list[str]:
    lines = [f"shutdown_timeout = {SHUTDOWN_TIMEOUT} s, target at most {SHUTDOWN_TIMEOUT + 0.5} s"]
    with misbehaving_receiver("hang") as hanging_url:
        cases = (
            ("down (closed port)", DOWN_URL),
            ("hanging (never answers)", f"{hanging_url}/oai/v1/log"),
        )
        for label, url in cases:
            for use_spool in (False, True):
                for records in (1, 1000):
                    with tempfile.TemporaryDirectory() as folder:
                        spool = str(Path(folder) / "spool") if use_spool else ""
                        seconds = exit_seconds(url, spool, records)
                    spool_label = "with spool" if use_spool else "no spool"
                    lines.append(
                        f"{label:24} {spool_label:10} {records:5} records: exit after {seconds:5.2f} s"
                    )
    return lines


# 4. Handler latency


def latencies(calls: int) -> list[float]:
    """Time each of `calls` handler calls, in microseconds.

    A short sleep between calls stands for the I/O a service waits on, and lets the exporter
    threads run.
    """
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        handler(REQUEST)
        samples.append((time.perf_counter_ns() - started) / 1000)
        time.sleep(50e-6)
    return samples


def measure_latency(calls: int) -> list[str]:
    lines = [f"{'receiver':10} {'p50 us':>8} {'p99 us':>8} {'max us':>9}  delivered/dropped"]

    def run(label: str, url: str) -> None:
        heliconetrace.configure(api_key=KEY, log_url=url)
        latencies(1000)  # warm-up, and the threads start
        samples = sorted(latencies(calls))
        stats = heliconetrace.stats()
        p50 = statistics.median(samples)
        p99 = samples[int(len(samples) * 0.99)]
        lines.append(
            f"{label:10} {p50:8.1f} {p99:8.1f} {samples[-1]:9.1f}  {stats.delivered}/{stats.dropped}"
        )
        heliconetrace.shutdown(0.5)

    with fast_receiver() as url:
        run("fast", f"{url}/oai/v1/log")
    with misbehaving_receiver("slow", delay=1.0) as url:
        run("slow", f"{url}/oai/v1/log")
    run("down", DOWN_URL)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="records for throughput")
    parser.add_argument("--calls", type=int, default=100_000, help="calls for the memory part")
    parser.add_argument("--latency-calls", type=int, default=20_000, help="calls per latency run")
    parser.add_argument("--serve", choices=["slow", "hang"], help=argparse.SUPPRESS)
    parser.add_argument("--delay", type=float, default=1.0, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        asyncio.run(_serve(arguments.serve, arguments.delay))
        return

    print(f"machine: {machine()}")
    sections = (
        ("Throughput", lambda: measure_throughput(arguments.records)),
        ("Memory growth with Helicone down", lambda: measure_memory(arguments.calls)),
        ("Exit time with Helicone down or hanging", measure_exit),
        ("Handler latency", lambda: measure_latency(arguments.latency_calls)),
    )
    for title, measure in sections:
        print(f"\n{title}")
        for line in measure():
            print(f"  {line}")


if __name__ == "__main__":
    main()
