"""A session's outgoing queue: bounded for live traffic, ended by a final status."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import grpc

from syncwire.v1 import sync_pb2


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """Why a session ends: the status its stream closes with."""

    code: grpc.StatusCode
    reason: str
    reconnect: bool = True
    label: str = ""
    """Short metrics label (e.g. "slow_consumer"); defaults to the status code name."""

    @property
    def metric_label(self) -> str:
        return self.label or self.code.name.lower()

    def to_response(self) -> sync_pb2.SyncResponse:
        return sync_pb2.SyncResponse(
            disconnect=sync_pb2.Disconnect(
                code=self.code.value[0], reason=self.reason, reconnect=self.reconnect
            )
        )


class SessionEnded(Exception):
    """Raised by `EventQueue.get` once the queue is drained after `end`."""

    def __init__(self, end: SessionEnd) -> None:
        super().__init__(end.reason)
        self.end = end


class EventQueue:
    """FIFO of responses for one session.

    `put` refuses live events beyond `limit` (the caller applies the slow-consumer
    policy); `put_always` is for bounded bursts the server itself causes (replays,
    direct replies). After `end`, everything queued is still delivered, then the end.
    """

    __slots__ = ("_abandoned", "_end", "_items", "_limit", "_waiter")

    def __init__(self, limit: int) -> None:
        self._items: deque[sync_pb2.SyncResponse] = deque()
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self._end: SessionEnd | None = None
        self._abandoned: asyncio.Future[SessionEnd] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def ended(self) -> bool:
        return self._end is not None

    def put(self, event: sync_pb2.SyncResponse) -> bool:
        """Queues a live event; False when the queue is full (nothing is queued)."""
        if len(self._items) >= self._limit:
            return False
        self.put_always(event)
        return True

    def put_always(self, event: sync_pb2.SyncResponse) -> None:
        if self._end is not None:
            return
        self._items.append(event)
        self._wake()

    def end(self, end: SessionEnd, *, discard_pending: bool = False) -> None:
        """Ends the queue; the first end wins. `discard_pending` drops what is queued
        (a slow consumer recovers it from history instead)."""
        if self._end is not None:
            return
        if discard_pending:
            self._items.clear()
        self._end = end
        self._wake()
        if discard_pending:
            self._abandon_future().set_result(end)

    def _abandon_future(self) -> asyncio.Future[SessionEnd]:
        if self._abandoned is None:
            self._abandoned = asyncio.get_running_loop().create_future()
        return self._abandoned

    async def abandoned(self) -> SessionEnd:
        """Returns once the queue was ended with `discard_pending` (a slow consumer): a
        transport blocked writing to that peer should stop waiting and close it."""
        return await asyncio.shield(self._abandon_future())

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> sync_pb2.SyncResponse:
        """Next event; raises SessionEnded once ended and drained."""
        while not self._items:
            if self._end is not None:
                raise SessionEnded(self._end)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def get_nowait(self) -> sync_pb2.SyncResponse | None:
        """Next event if one is queued (for batching writers), else None."""
        return self._items.popleft() if self._items else None
