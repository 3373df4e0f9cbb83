"""wire.flag.Flag behaves as asyncio.Event where the server uses it."""

from __future__ import annotations

import asyncio

import pytest

from wire.flag import Flag


async def test_set_wakes_every_waiter_and_clear_does_not_unwake() -> None:
    flag = Flag()
    assert not flag.is_set()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    flag.clear()  # already woken: they still return
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert not flag.is_set()
    flag.set()
    assert await flag.wait() is True  # set: returns at once


async def test_a_cancelled_waiter_is_forgotten() -> None:
    flag = Flag()
    waiter = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert flag._waiters == []
    other = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    flag.set()
    assert await asyncio.wait_for(other, 5) is True
