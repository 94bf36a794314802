"""Per-item cost of a decorated generator beside the bare generator.

    python benchmarks/bench_stream.py [--rounds 15] [--items 2000]

Each round consumes one generator of `--items` items per variant, in turn, and the figure is
the median over rounds of (decorated - bare) time per item. Items are str chunks, as a handler
relaying text would yield. Delivery is on, to benchmarks/fast_receiver.py in another process;
the wait for delivery is outside the timed part, and stream reassembly runs on the exporter
thread, not per item.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from common import fast_receiver, machine

import heliconetrace
from heliconetrace import helicone_logged


def make_sync(items: int) -> Callable[[], Iterator[str]]:
    def stream() -> Iterator[str]:
        for _ in range(items):
            yield "tok "

    return stream


def make_async(items: int) -> Callable[[], AsyncIterator[str]]:
    async def stream() -> AsyncIterator[str]:
        for _ in range(items):
            yield "tok "

    return stream


def time_sync(function: Callable[[], Iterator[str]], items: int) -> float:
    started = time.perf_counter()
    for _ in function():
        pass
    return (time.perf_counter() - started) / items


def time_async(function: Callable[[], AsyncIterator[str]], items: int) -> float:
    async def run() -> float:
        started = time.perf_counter()
        async for _ in function():
            pass
        return (time.perf_counter() - started) / items

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--items", type=int, default=2000)
    arguments = parser.parse_args()
    items = arguments.items

    variants: dict[str, tuple[Callable[..., float], Any]] = {
        "generator bare": (time_sync, make_sync(items)),
        "generator heliconetrace": (time_sync, helicone_logged(make_sync(items))),
        "async generator bare": (time_async, make_async(items)),
        "async generator heliconetrace": (time_async, helicone_logged(make_async(items))),
    }
    with fast_receiver() as url:
        heliconetrace.configure(api_key="sk-helicone-benchmark", log_url=f"{url}/oai/v1/log")
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(arguments.rounds):
            for name, (timer, function) in variants.items():
                samples[name].append(timer(function, items))
                if not heliconetrace.flush(60):
                    raise SystemExit("delivery did not keep up")
        stats = heliconetrace.stats()
    if stats.dropped or stats.failed:
        raise SystemExit(f"records were dropped or failed: {stats}")

    medians = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
    print(f"machine: {machine()}")
    print(f"rounds: {arguments.rounds}, items per stream: {items}, records: {stats.delivered}")
    print(f"{'variant':32} {'us/item':>9} {'added us/item':>14}")
    for kind in ("generator", "async generator"):
        bare = medians[f"{kind} bare"]
        decorated = medians[f"{kind} heliconetrace"]
        print(f"{kind + ' bare':32} {bare:9.3f}")
        print(f"{kind + ' heliconetrace':32} {decorated:9.3f} {decorated - bare:14.3f}")


if __name__ == "__main__":
    main()
