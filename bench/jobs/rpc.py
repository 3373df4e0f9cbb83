"""Unary calls in a closed loop: each caller makes its next call when the last ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.clients import rpc_target
from bench.histogram import Histogram
from bench.jobs.common import describe
from bench.timing import sleep_until

MAX_ERRORS = 100


async def run_rpc(
    kind: str,
    endpoint: str,
    collection: str,
    concurrency: int,
    t_start: int,
    t0: int,
    t1: int,
    compression: bool,
) -> dict[str, Any]:
    """`concurrency` callers in a loop from `t_start` until `t1`; counts the calls that
    started and ended inside [t0, t1) and their latency."""
    target = rpc_target(kind, endpoint, compression=compression)
    latency = Histogram()
    done_in_window = 0
    errors: list[str] = []

    async def loop_calls(call: Callable[[], Awaitable[None]]) -> None:
        nonlocal done_in_window
        while (start := time.monotonic_ns()) < t1:
            try:
                await call()
            except Exception as exc:
                errors.append(describe(exc))
                if len(errors) > MAX_ERRORS:
                    return
                continue
            end = time.monotonic_ns()
            if t0 <= start and end < t1:
                done_in_window += 1
                latency.add((end - start) // 1000)

    try:
        callers = await asyncio.wait_for(target.open(collection, concurrency), 30)
        await callers[0]()  # connect and warm up before the clock starts
        await sleep_until(t_start)
        cpu_start = time.process_time()
        await asyncio.gather(*(loop_calls(call) for call in callers))
        cpu = time.process_time() - cpu_start
    finally:
        await target.close()
    return {
        "calls": done_in_window,
        "latency": latency.to_json(),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "cpu_seconds": cpu,
    }
