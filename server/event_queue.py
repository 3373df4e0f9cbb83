"""A session's outgoing queue: live traffic bounded, replays paced by the reader,
replies paced by the client's requests, ended by a final status.

Three kinds of entries share one FIFO, each bounded its own way:

- **live events** (deltas, presence, heartbeats) count against the slow-consumer bound:
  at most `limit` messages and `limit_bytes` bytes may wait. `put` refuses beyond it and
  the session ends the peer as a slow consumer: the bound judges the reader's pace only.
- **replays** (history sent after `Subscribed`) take one slot each, whatever their
  length: their events are handed out one at a time as the writer asks for them, so a
  replay flows under the transport's flow control like live traffic, and a reader that
  keeps up finishes it in one go. Live events of the collection that arrive meanwhile
  wait behind the replay (counted as live), then follow it.
- **direct replies** are never refused; instead the session stops reading requests while
  `limit` replies or `limit_bytes` of them wait (`wait_for_reply_room`), so a client that
  sends requests and never reads is held back by its own transport's flow control.

A transport may install a **write-now hook** (`write_now`): while nothing is queued and
the consumer waits in `get`, a live event or reply is first offered to it, and what it
takes (returns True) never enters the queue: a fan-out writes to idle sessions from the
dispatch loop, with no task switch per session. The hook takes an event only when it can
send it without waiting; anything else is queued as usual, and everything after it too
until the consumer has drained the queue, so the order stays the queue's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from syncwire.v1 import sync_pb2
from wire.flag import Flag


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
        """The `reason` label of `syncwire_disconnects_total`: `label`, or the status
        code's name in lower case.
        """
        return self.label or self.code.name.lower()

    def to_response(self) -> sync_pb2.SyncResponse:
        """The `Disconnect{code, reason, reconnect}` sent before the stream ends."""
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


_SPENT: deque[Any] = deque(maxlen=0)
"""What a finished replay's queues become (its own two deques cost ~1.5 KiB for the
subscription's whole life); nothing is added to a done replay, and maxlen=0 keeps it
empty even if something were."""

_LIVE = True
_REPLY = False


class _LastSize:
    """The encoded size of the event sized last. A broadcast hands one shared, never
    mutated event to every subscriber's queue in a row (see server/broadcast_cache.py),
    so its size is computed once per broadcast instead of once per subscriber. Holding
    the event keeps its id from being reused."""

    __slots__ = ("event", "size")

    def __init__(self) -> None:
        self.event: sync_pb2.SyncResponse | None = None
        self.size = 0

    def of(self, event: sync_pb2.SyncResponse) -> int:
        if event is not self.event:
            self.event = event
            self.size = event.ByteSize()
        return self.size


_last_size = _LastSize()


class Replay:
    """One subscription's catch-up: history to send, then the live events of the
    collection that arrived while it was fetched or sent.

    Created by `EventQueue.catch_up` when the subscription attaches to live delivery;
    live events go to `EventQueue.hold` until the replay is done. `start` places it in
    the stream (after the `Subscribed` reply); `cancel` drops it (failed subscribe,
    unsubscribe).
    """

    __slots__ = ("_held", "_history", "cancelled", "done", "queued")

    def __init__(self) -> None:
        self._history: deque[sync_pb2.SyncResponse] = deque()
        self._held: deque[tuple[sync_pb2.SyncResponse, int]] = deque()
        self.cancelled = False
        self.queued = False
        self.done = False
        """Sent in full: later live events of the collection go straight to the queue."""

    def _next(self) -> tuple[sync_pb2.SyncResponse, int] | None:
        """The next entry: (event, -1) from history, (event, counted size) for a held
        live event; None when the replay is over."""
        if self._history:
            return self._history.popleft(), -1
        if self._held:
            return self._held.popleft()
        return None


class EventQueue:
    """FIFO of responses for one session (see the module docstring for the bounds).

    After `end`, everything queued is still delivered, then the end.
    """

    __slots__ = (
        "_abandoned",
        "_end",
        "_items",
        "_limit",
        "_limit_bytes",
        "_live",
        "_live_bytes",
        "_replaying",
        "_replies",
        "_reply_bytes",
        "_reply_room",
        "_waiter",
        "write_now",
    )

    def __init__(self, limit: int, limit_bytes: int) -> None:
        self._items: deque[tuple[sync_pb2.SyncResponse, int, bool] | Replay] = deque()
        self._limit = limit
        self._limit_bytes = limit_bytes
        self._live = 0
        self._live_bytes = 0
        self._replaying = 0
        self._replies = 0
        self._reply_bytes = 0
        self._reply_room = Flag()
        self._reply_room.set()
        self._waiter: asyncio.Future[None] | None = None
        self._end: SessionEnd | None = None
        self._abandoned: asyncio.Future[SessionEnd] | None = None
        self.write_now: Callable[[sync_pb2.SyncResponse], bool] | None = None
        """Sends an event at once if it can go without waiting (see the module docstring)."""

    def __len__(self) -> int:
        """Messages waiting: live events, replies and the rest of every replay."""
        return self._live + self._replies + self._replaying

    @property
    def live_pending(self) -> tuple[int, int]:
        """Live events waiting to be sent: (messages, bytes)."""
        return self._live, self._live_bytes

    @property
    def replies_full(self) -> bool:
        """True while the session should not read requests (too many unread replies)."""
        return not self._reply_room.is_set()

    @property
    def ended(self) -> bool:
        """True once `end()` was called."""
        return self._end is not None

    # ------------------------------------------------------------------ live

    def _admit_live(self, event: sync_pb2.SyncResponse) -> int | None:
        """The event's size when the live bound has room for it, else None. One
        event larger than the byte bound still passes when nothing else is waiting."""
        if self._end is not None:
            return 0
        size = _last_size.of(event)
        if self._live >= self._limit or (
            self._live and self._live_bytes + size > self._limit_bytes
        ):
            return None
        self._live += 1
        self._live_bytes += size
        return size

    def _written_now(self, event: sync_pb2.SyncResponse) -> bool:
        """Offers `event` to `write_now` when the consumer waits on an empty queue."""
        write_now = self.write_now
        if write_now is None or self._items or self._end is not None:
            return False
        waiter = self._waiter
        return waiter is not None and not waiter.done() and write_now(event)

    def put(self, event: sync_pb2.SyncResponse) -> bool:
        """Queues a live event (or sends it at once, see `write_now`); False when the live
        bound is full (nothing is queued)."""
        # The fan-out hot path: `_written_now` and `_admit_live` inlined.
        if self._end is not None:
            return True
        write_now = self.write_now
        if write_now is not None and not self._items:
            waiter = self._waiter
            if waiter is not None and not waiter.done() and write_now(event):
                return True
        size = _last_size.of(event)
        live = self._live
        if live >= self._limit or (live and self._live_bytes + size > self._limit_bytes):
            return False
        self._live = live + 1
        self._live_bytes += size
        self._items.append((event, size, _LIVE))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def catch_up(self) -> Replay:
        """A replay for a subscription that is attaching; see `Replay`."""
        return Replay()

    def hold(self, replay: Replay, event: sync_pb2.SyncResponse) -> bool:
        """Holds a live event behind `replay` (queues it like `put` once the replay is
        done); False when the live bound is full."""
        if replay.cancelled:
            return True
        if replay.done:
            return self.put(event)
        size = self._admit_live(event)
        if size is None:
            return False
        if self._end is None:
            replay._held.append((event, size))
            if replay.queued:
                self._wake()
        return True

    def start(self, replay: Replay, history: Iterable[sync_pb2.SyncResponse]) -> None:
        """Places `replay` in the stream: `history`, then the held live events (the
        caller holds only those the history does not already contain)."""
        if replay.cancelled or replay.queued:
            return
        replay.queued = True
        if self._end is None:
            replay._history.extend(history)
            self._replaying += len(replay._history)
            self._items.append(replay)
            self._wake()

    def cancel(self, replay: Replay) -> None:
        """Drops what is left of `replay` (its held live events stop counting)."""
        if replay.cancelled:
            return
        replay.cancelled = True
        replay.done = True
        if self._end is None:  # after an end the bounds no longer matter
            for _, size in replay._held:
                self._uncount_live(size)
            self._replaying -= len(replay._history)
        replay._held.clear()
        replay._history.clear()

    # --------------------------------------------------------------- replies

    def put_reply(self, event: sync_pb2.SyncResponse) -> None:
        """Queues a direct reply (never refused; see `wait_for_reply_room`), or sends it
        at once (see `write_now`)."""
        if self._end is not None or self._written_now(event):
            return
        size = event.ByteSize()
        self._replies += 1
        self._reply_bytes += size
        if self._replies >= self._limit or self._reply_bytes >= self._limit_bytes:
            self._reply_room.clear()
        self._items.append((event, size, _REPLY))
        self._wake()

    async def wait_for_reply_room(self) -> None:
        """Returns once fewer than `limit` replies and `limit_bytes` of them wait (or
        the queue ended): the session reads its next request only then."""
        while not self._reply_room.is_set() and self._end is None:
            await self._reply_room.wait()

    # ------------------------------------------------------------------- end

    def end(self, end: SessionEnd, *, discard_pending: bool = False) -> None:
        """Ends the queue; the first end wins. `discard_pending` drops what is queued
        (a slow consumer recovers it from history instead)."""
        if self._end is not None:
            return
        if discard_pending:
            self._discard()
        self._end = end
        self._reply_room.set()
        self._wake()
        if discard_pending:
            self._abandon_future().set_result(end)

    def _discard(self) -> None:
        for item in self._items:
            if isinstance(item, Replay):
                item.cancelled = item.done = True
        self._items.clear()
        self._live = self._live_bytes = self._replies = self._reply_bytes = self._replaying = 0

    def _abandon_future(self) -> asyncio.Future[SessionEnd]:
        if self._abandoned is None:
            self._abandoned = asyncio.get_running_loop().create_future()
        return self._abandoned

    async def abandoned(self) -> SessionEnd:
        """Returns once the queue was ended with `discard_pending` (a slow consumer): a
        transport blocked writing to that peer should stop waiting and close it."""
        return await asyncio.shield(self._abandon_future())

    # ------------------------------------------------------------------- out

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _uncount_live(self, size: int) -> None:
        self._live -= 1
        self._live_bytes -= size

    def get_nowait(self) -> sync_pb2.SyncResponse | None:
        """Next event if one is ready (for batching writers), else None."""
        items = self._items
        while items:
            head = items[0]
            if isinstance(head, Replay):
                while not head.cancelled and (taken := head._next()) is not None:
                    event, size = taken
                    if size >= 0:
                        self._uncount_live(size)
                    else:
                        self._replaying -= 1
                    return event
                head.done = True
                head._history = head._held = _SPENT  # never appended to once done
                items.popleft()
                continue
            items.popleft()
            event, size, live = head
            if live:
                self._live -= 1
                self._live_bytes -= size
            else:
                self._replies -= 1
                self._reply_bytes -= size
                if self._replies < self._limit and self._reply_bytes < self._limit_bytes:
                    self._reply_room.set()
            return event
        return None

    async def get(self) -> sync_pb2.SyncResponse:
        """Next event; raises SessionEnded once ended and drained."""
        while (event := self.get_nowait()) is None:
            if self._end is not None:
                raise SessionEnded(self._end)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return event
