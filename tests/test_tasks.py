"""wire.tasks.cancel_and_wait: a helper task's failure is logged, never swallowed, and
a task ends even when it loses a cancellation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from server.app import SyncwireServer
from wire.tasks import cancel_and_wait

from . import service_harness

log = logging.getLogger("tests.tasks")


async def test_a_failure_while_ending_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    started = asyncio.Event()

    async def breaks_when_cancelled() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("flush lost") from None

    task = asyncio.create_task(breaks_when_cancelled())
    await started.wait()
    with caplog.at_level(logging.ERROR, logger="tests.tasks"):
        await cancel_and_wait(task, log, "outbox pump")
    (record,) = caplog.records
    assert record.getMessage() == "outbox pump failed"
    assert record.exc_info is not None and "flush lost" in str(record.exc_info[1])


async def test_plain_cancellation_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    task = asyncio.create_task(asyncio.Event().wait())
    with caplog.at_level(logging.DEBUG, logger="tests.tasks"):
        await cancel_and_wait(task, log, "reader")
    assert task.cancelled() and caplog.records == []


async def ends_by_itself(operation: Coroutine[Any, Any, None]) -> None:
    """Fails unless `operation` returns within 30 s without being cancelled: a bound on
    a hang, not on speed (an `asyncio.timeout` would cancel the operation, and its
    cancellation would end the lost-cancellation task that the test is about)."""
    ending = asyncio.create_task(operation)
    done, _ = await asyncio.wait({ending}, timeout=30)
    if ending not in done:
        for task in asyncio.all_tasks():  # let the test's own teardown finish
            if task is not asyncio.current_task():
                task.cancel()
        raise AssertionError("still waiting after 30 s: a lost cancellation was not repeated")
    ending.result()


def _loses_one_cancellation() -> tuple[asyncio.Event, Callable[[], Awaitable[None]]]:
    """An operation that loses the first cancellation it gets, as `asyncio.wait_for`
    does on Python < 3.12 when the cancellation arrives just as the awaited operation
    completes (CPython gh-86296; redis-py awaits every socket write through it)."""
    entered = asyncio.Event()
    lost: list[bool] = []

    async def operation() -> None:
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if lost:
                raise
            lost.append(True)  # returns as if the operation had completed

    return entered, operation


async def test_a_lost_cancellation_is_repeated_until_the_task_ends() -> None:
    entered, operation = _loses_one_cancellation()

    async def loop_task() -> None:  # like the upkeep loop or the Redis reader
        while True:
            await operation()
            await asyncio.sleep(3600)

    task = asyncio.create_task(loop_task())
    await entered.wait()
    await ends_by_itself(cancel_and_wait(task, log, "upkeep", recancel_after=0.01))
    assert task.cancelled()


async def test_the_server_stops_when_its_upkeep_loses_a_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Redis-backed server's stop() hung forever when the upkeep loop's broker call
    lost the cancellation (seen on clean-clone runs under load); it must return."""
    entered, operation = _loses_one_cancellation()
    server = SyncwireServer(service_harness.test_config(heartbeat_interval=0.05))
    await server.start()
    monkeypatch.setattr(server.core.broker, "maintenance", operation)
    async with asyncio.timeout(30):
        await entered.wait()
    await ends_by_itself(server.stop(grace=1.0))
