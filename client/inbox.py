"""The buffer between the connection and the application's `async for`.

Deltas and presence wait for room (back-pressure reaches the server, which recovers
from history if the application falls far behind); recovery notices and errors are
always accepted, so a gap report can never be lost to a full buffer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """FIFO with a soft bound (0 = none); iterating ends after `close` once drained."""

    def __init__(self, limit: int) -> None:
        self._items: deque[T] = deque()
        self._limit = limit
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return bool(self._limit) and len(self._items) >= self._limit

    async def put(self, item: T) -> None:
        """Appends `item`, waiting while the buffer is full. If the wait is cancelled,
        nothing was appended."""
        while self.full and not self._closed:
            self._writable.clear()
            await self._writable.wait()
        self.put_always(item)

    def put_always(self, item: T) -> None:
        """Appends `item` even beyond the bound (rare control events)."""
        if self._closed:
            return
        self._items.append(item)
        self._readable.set()

    async def get(self) -> T | None:
        """Next item, or None once closed and drained."""
        while not self._items:
            if self._closed:
                return None
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        if not self.full:
            self._writable.set()
        return item

    def close(self) -> None:
        self._closed = True
        self._readable.set()
        self._writable.set()

    async def __aiter__(self) -> AsyncIterator[T]:
        while (item := await self.get()) is not None:
            yield item
