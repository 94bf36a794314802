"""Per-call cost of @helicone_logged beside a bare call and a minimal decorator.

    python benchmarks/bench_decorator.py [--rounds 15] [--calls 2000]

Delivery is on: records go to benchmarks/fast_receiver.py in another process. Each round times
`--calls` calls of each variant in turn, then waits for delivery outside the timed part, so the
queue never fills and no record is dropped (the script checks). The figure per variant is the
median over rounds of the time per call; ratios are taken within this one run.

The minimal decorator is the floor for any decorator that records something: it sets a
contextvar and appends a dict to a deque.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextvars
import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

from common import fast_receiver, machine

import heliconetrace
from heliconetrace import helicone_logged

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
CHUNKS = [f"token-{index} " for index in range(3)]

_minimal_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("minimal", default=None)
_minimal_sink: collections.deque[dict[str, Any]] = collections.deque(maxlen=100_000)


def minimal(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _minimal_var.set(function.__name__)
        try:
            result = function(*args, **kwargs)
        finally:
            _minimal_var.reset(token)
        _minimal_sink.append({"name": function.__name__, "result": result})
        return result

    return wrapper


def minimal_async(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _minimal_var.set(function.__name__)
        try:
            result = await function(*args, **kwargs)
        finally:
            _minimal_var.reset(token)
        _minimal_sink.append({"name": function.__name__, "result": result})
        return result

    return wrapper


def sync_handler(body: dict[str, Any]) -> dict[str, Any]:
    return RESPONSE


async def async_handler(body: dict[str, Any]) -> dict[str, Any]:
    return RESPONSE


def generator_handler(body: dict[str, Any]) -> Any:
    yield from CHUNKS


async def async_generator_handler(body: dict[str, Any]) -> Any:
    for chunk in CHUNKS:
        yield chunk


def time_sync(function: Callable[..., Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function(REQUEST)
    return (time.perf_counter() - started) / calls


def time_generator(function: Callable[..., Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        for _ in function(REQUEST):
            pass
    return (time.perf_counter() - started) / calls


def time_async(function: Callable[..., Any], calls: int) -> float:
    async def run() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await function(REQUEST)
        return (time.perf_counter() - started) / calls

    return asyncio.run(run())


def time_async_generator(function: Callable[..., Any], calls: int) -> float:
    async def run() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            async for _ in function(REQUEST):
                pass
        return (time.perf_counter() - started) / calls

    return asyncio.run(run())


VARIANTS: dict[str, tuple[Callable[..., float], Callable[..., Any]]] = {
    "sync bare": (time_sync, sync_handler),
    "sync minimal": (time_sync, minimal(sync_handler)),
    "sync heliconetrace": (time_sync, helicone_logged(sync_handler)),
    "async bare": (time_async, async_handler),
    "async minimal": (time_async, minimal_async(async_handler)),
    "async heliconetrace": (time_async, helicone_logged(async_handler)),
    "generator bare (3 items)": (time_generator, generator_handler),
    "generator heliconetrace (3 items)": (time_generator, helicone_logged(generator_handler)),
    "async generator bare (3 items)": (time_async_generator, async_generator_handler),
    "async generator heliconetrace (3 items)": (
        time_async_generator,
        helicone_logged(async_generator_handler),
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    arguments = parser.parse_args()

    with fast_receiver() as url:
        heliconetrace.configure(api_key="sk-helicone-benchmark", log_url=f"{url}/oai/v1/log")
        samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(arguments.rounds):
            for name, (timer, function) in VARIANTS.items():
                samples[name].append(timer(function, arguments.calls))
                if not heliconetrace.flush(60):
                    raise SystemExit("delivery did not keep up; results would include drops")
        stats = heliconetrace.stats()

    if stats.dropped or stats.failed:
        raise SystemExit(f"records were dropped or failed: {stats}")

    medians = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
    print(f"machine: {machine()}")
    print(
        f"rounds: {arguments.rounds}, calls per round: {arguments.calls}, "
        f"records delivered: {stats.delivered}"
    )
    print(f"{'variant':42} {'us/call':>9} {'x bare':>8} {'x minimal':>10}")
    for name, value in medians.items():
        kind = name.split(" ")[0] if not name.startswith("async generator") else "async generator"
        if name.startswith("generator"):
            kind = "generator"
        bare = medians.get(f"{kind} bare") or medians[f"{kind} bare (3 items)"]
        minimal_value = medians.get(f"{kind} minimal")
        ratio_minimal = f"{value / minimal_value:10.1f}" if minimal_value else f"{'-':>10}"
        print(f"{name:42} {value:9.2f} {value / bare:8.1f} {ratio_minimal}")


if __name__ == "__main__":
    main()
