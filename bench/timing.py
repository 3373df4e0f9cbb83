"""Waiting for absolute CLOCK_MONOTONIC instants, and CPU use over such a window."""

from __future__ import annotations

import asyncio
import time

from bench.procs import CpuWindow, machine_busy_seconds


async def sleep_until(deadline_ns: int) -> None:
    """Sleeps until ``time.monotonic_ns()`` reaches `deadline_ns` (returns at once if it
    has)."""
    delay = (deadline_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


async def cpu_during(
    server_pids: tuple[int, ...], client_pids: list[int], t0: int, t1: int
) -> dict[str, float]:
    """Cores used over [t0, t1) by the server processes (``server_cpu``), the client
    workers (``client_cpu``) and everything else on the machine (``other_cpu``: other
    bench servers, the bench parent, and anything not ours, which makes figures noisy)."""
    window = CpuWindow({"server": list(server_pids), "client": client_pids})
    await sleep_until(t0)
    window.begin()
    await sleep_until(t1)
    used = window.end()
    return {
        "server_cpu": used["server"],
        "client_cpu": used["client"],
        "other_cpu": max(0.0, used["machine"] - used["server"] - used["client"]),
    }


async def wait_for_quiet(threshold: float, max_wait: float, sample: float = 0.5) -> float:
    """Waits (at most `max_wait` seconds) until the whole machine used less than
    `threshold` cores over a `sample`-second interval; returns the last load seen.
    Between rounds the bench's own processes are idle, so this waits out other work."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait
    while True:
        before, started = machine_busy_seconds(), loop.time()
        await asyncio.sleep(sample)
        load = (machine_busy_seconds() - before) / (loop.time() - started)
        if load < threshold or loop.time() >= deadline:
            return load
