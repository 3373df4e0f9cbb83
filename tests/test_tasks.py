"""wire.tasks.cancel_and_wait: a helper task's failure is logged, never swallowed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from wire.tasks import cancel_and_wait

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
