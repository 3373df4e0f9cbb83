"""Waiting for absolute CLOCK_MONOTONIC instants, and CPU use over such a window."""

from __future__ import annotations

import asyncio
import time

from bench.procs import CpuWindow


async def sleep_until(deadline_ns: int) -> None:
    """Sleeps until ``time.monotonic_ns()`` reaches `deadline_ns` (returns at once if it
    has)."""
    delay = (deadline_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


async def cpu_during(
    server_pids: tuple[int, ...], client_pids: list[int], t0: int, t1: int
) -> tuple[float, float]:
    """Cores used by the server processes and by the client processes over [t0, t1)."""
    server, clients = CpuWindow(list(server_pids)), CpuWindow(client_pids)
    await sleep_until(t0)
    server.begin()
    clients.begin()
    await sleep_until(t1)
    return server.end(), clients.end()
