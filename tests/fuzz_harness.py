"""Shared pieces of the fuzz tests: input mutations and the server health check run
after every example (nothing crashed, nothing leaked, the server still serves)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from server.app import SyncwireServer

T = TypeVar("T", str, bytes)

FUZZ_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
"""Bounded for CI: each fuzz test runs in a few seconds."""


@st.composite
def mutated(draw: st.DrawFn, originals: Sequence[T], alphabet: st.SearchStrategy[T]) -> T:
    """One of `originals`, truncated, or with a few slices replaced, inserted or dropped."""
    value = draw(st.sampled_from(originals))
    if draw(st.booleans()):
        return value[: draw(st.integers(0, max(len(value) - 1, 0)))]
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(value)))
        end = draw(st.integers(start, min(len(value), start + 8)))
        value = value[:start] + draw(alphabet) + value[end:]
    return value


@dataclass
class Baseline:
    """What the server holds when no fuzzing connection is open."""

    tasks: set[asyncio.Task[object]]
    sessions: int
    typed_connections: int


def baseline_of(server: SyncwireServer) -> Baseline:
    return Baseline(
        tasks=asyncio.all_tasks(),
        sessions=len(server.core.registry),
        typed_connections=len(server.ws_server.connections),
    )


async def assert_back_to(server: SyncwireServer, baseline: Baseline, timeout: float = 5.0) -> None:
    """Every task the example started ends (awaited, within `timeout`), and the server
    holds the sessions and connections it held before."""
    try:
        async with asyncio.timeout(timeout):
            while extra := asyncio.all_tasks() - baseline.tasks - {asyncio.current_task()}:
                await asyncio.wait(extra)  # they may start others on their way out: again
    except TimeoutError:
        left = sorted(task.get_name() for task in asyncio.all_tasks() - baseline.tasks)
        raise AssertionError(f"tasks still running after {timeout} s: {left}") from None
    assert len(server.core.registry) == baseline.sessions
    assert len(server.ws_server.connections) == baseline.typed_connections


def server_errors(records: Sequence[logging.LogRecord]) -> list[str]:
    """ERROR records logged by the server: an unexpected exception somewhere."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.ERROR and r.name.startswith(("server", "websockets"))
    ]


async def assert_unharmed(
    server: SyncwireServer,
    baseline: Baseline,
    bystander_served: Callable[[], Awaitable[object]],
    records: Sequence[logging.LogRecord],
) -> None:
    """After an example: nothing leaked, the bystander is still served, and the server
    logged no unexpected error."""
    await assert_back_to(server, baseline)
    await bystander_served()
    assert server_errors(records) == []
