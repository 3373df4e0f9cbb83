"""The buffer between the connection and the application's `async for`.

Putting never waits: the connection keeps reading (acknowledgements and heartbeats must
not queue behind deltas the application has not read yet). The client checks `full`
before adding a delta or a presence event and, when it is, pauses that subscription and
later rejoins it from its offset once the application has made room (`wait_for_room`);
presence events are dropped and reported instead. The bound counts events and bytes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """FIFO with a soft bound of `limit` items and `limit_bytes` bytes (0 = none);
    iterating ends after `close` once drained."""

    def __init__(self, limit: int, limit_bytes: int = 0) -> None:
        self._items: deque[tuple[T, int]] = deque()
        self._limit = limit
        self._low_water = limit // 2
        self._limit_bytes = limit_bytes
        self._bytes = 0
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        """True at the item limit or the byte limit (a limit of 0 is no limit)."""
        return (bool(self._limit) and len(self._items) >= self._limit) or (
            bool(self._limit_bytes) and self._bytes >= self._limit_bytes
        )

    def _over_low_water(self) -> bool:
        return (bool(self._limit) and len(self._items) > self._low_water) or (
            bool(self._limit_bytes) and self._bytes > self._limit_bytes // 2
        )

    def put(self, item: T, size: int = 0) -> None:
        """Appends `item` of `size` bytes (even beyond the bound: callers check `full`
        where it matters)."""
        if self._closed:
            return
        self._items.append((item, size))
        self._bytes += size
        self._readable.set()
        if self._over_low_water():
            self._room.clear()

    async def wait_for_room(self) -> None:
        """Returns once the buffer is at most half full, in items and bytes (or closed)."""
        while self._over_low_water() and not self._closed:
            self._room.clear()
            await self._room.wait()

    async def get(self) -> T | None:
        """Next item, or None once closed and drained."""
        while not self._items:
            if self._closed:
                return None
            self._readable.clear()
            await self._readable.wait()
        item, size = self._items.popleft()
        self._bytes -= size
        if not self._over_low_water():
            self._room.set()
        return item

    def close(self) -> None:
        """Ends the inbox: readers and writers waiting are woken and see it closed."""
        self._closed = True
        self._readable.set()
        self._room.set()

    async def __aiter__(self) -> AsyncIterator[T]:
        while (item := await self.get()) is not None:
            yield item
