"""Helpers for broker tests: a recording sink and delta builders."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from syncwire.v1 import sync_pb2, types_pb2


class Collector:
    """An event sink that records what it receives and lets tests wait for it."""

    def __init__(self) -> None:
        self.events: list[sync_pb2.SyncResponse] = []
        self._arrived = asyncio.Event()

    def __call__(self, event: sync_pb2.SyncResponse) -> None:
        self.events.append(event)
        self._arrived.set()

    def of_kind(self, kind: str) -> list[sync_pb2.SyncResponse]:
        return [event for event in self.events if event.WhichOneof("kind") == kind]

    @property
    def offsets(self) -> list[int]:
        return [event.delta.offset for event in self.of_kind("delta")]

    async def wait_until(
        self, condition: Callable[[Collector], bool], timeout: float = 5.0
    ) -> None:
        """Waits until `condition(self)` holds; fails with what arrived after `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while not condition(self):
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            kinds = [event.WhichOneof("kind") for event in self.events]
            raise AssertionError(f"condition not met within {timeout} s; got {kinds}") from None

    async def wait_deltas(self, count: int, timeout: float = 5.0) -> list[types_pb2.Delta]:
        await self.wait_until(lambda c: len(c.of_kind("delta")) >= count, timeout)
        return [event.delta for event in self.of_kind("delta")]


class ManualClock:
    """A monotonic clock tests move by hand (inject it where a `clock` is taken)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    condition: Callable[[T], bool],
    timeout: float = 10.0,
    interval: float = 0.02,
) -> T:
    """Calls `probe` until `condition` holds for its result and returns that result;
    fails with the last result after `timeout`. For states only a server-side clock
    changes (Redis TIME, key expiry), where no event announces the change."""
    result = await probe()
    try:
        async with asyncio.timeout(timeout):
            while not condition(result):
                await asyncio.sleep(interval)
                result = await probe()
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout} s; last {result!r}") from None
    return result


def delta(collection_id: str, data: bytes = b"d", **fields: object) -> types_pb2.Delta:
    return types_pb2.Delta(
        collection_id=collection_id,
        crdt_type=types_pb2.CRDT_TYPE_RGA,
        delta=data,
        **fields,  # type: ignore[arg-type]
    )
