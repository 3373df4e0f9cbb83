"""The embedded default broker: everything in this process's memory.

Offsets restart and the epoch changes when the process restarts, so recovering clients
are told their history is gone instead of silently missing deltas.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cachetools import TTLCache

from syncwire.v1 import sync_pb2, types_pb2

from ..clock import now_timestamp
from .base import (
    Broker,
    EventSink,
    HistorySlice,
    PublishResult,
    SnapshotOutcome,
    StoredSnapshot,
    classify_recovery,
)
from .hub import LocalHub
from .presence_events import join_entry, join_event, leave_event, updated_entry


def new_epoch() -> str:
    """A fresh, unguessable history epoch."""
    return uuid.uuid4().hex[:16]


@dataclass(slots=True)
class _Collection:
    epoch: str
    offset: int = 0
    # (offset, accepted-at monotonic seconds, shared SyncResponse(delta=...))
    history: deque[tuple[int, float, sync_pb2.SyncResponse]] = field(default_factory=deque)
    presence: dict[str, types_pb2.Presence] = field(default_factory=dict)
    snapshot: StoredSnapshot | None = None


class MemoryBroker(Broker):
    """Single-process broker with bounded history and a bounded de-duplication window."""

    def __init__(
        self,
        *,
        history_size: int = 1000,
        history_ttl: float = 3600.0,
        dedupe_ttl: float = 86400.0,
        dedupe_max_entries: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`history_ttl`, `dedupe_ttl`: seconds of `clock` (monotonic seconds; tests
        inject their own, as for the rate limiter and the authenticator)."""
        self._clock = clock
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._collections: dict[str, _Collection] = {}
        # (collection_id, client_message_id) -> first result, forgotten after dedupe_ttl
        # seconds or, beyond dedupe_max_entries, least recently used first.
        self._dedupe: TTLCache[tuple[str, str], PublishResult] = TTLCache(
            maxsize=dedupe_max_entries, ttl=dedupe_ttl, timer=clock
        )
        self.hub = LocalHub()

    async def start(self) -> None:
        """Nothing to connect to: the memory broker is ready at once."""
        return None

    async def close(self) -> None:
        """Forgets every collection, its history and the client-message-id window."""
        self._collections.clear()
        self._dedupe.clear()

    def _collection(self, collection_id: str) -> _Collection:
        state = self._collections.get(collection_id)
        if state is None:
            state = self._collections[collection_id] = _Collection(epoch=new_epoch())
        return state

    def _trim(self, state: _Collection, now: float) -> None:
        history = state.history
        while len(history) > self._history_size:
            history.popleft()
        limit = now - self._history_ttl
        while history and history[0][1] < limit:
            history.popleft()

    async def publish(self, delta: types_pb2.Delta) -> PublishResult:
        """See `Broker.publish`. Offsets count from 1 per collection within the broker's
        epoch (one per collection per process); the client-message-id window is a
        `cachetools.TTLCache` (`dedupe_ttl` seconds, at most `dedupe_max_entries`).
        """
        collection_id = delta.collection_id
        now = self._clock()
        key = (collection_id, delta.client_message_id)
        if delta.client_message_id:
            first = self._dedupe.get(key)
            if first is not None:
                return PublishResult(collection_id, first.offset, first.epoch, duplicate=True)
        state = self._collection(collection_id)
        state.offset += 1
        event = sync_pb2.SyncResponse(delta=delta)
        stored = event.delta
        stored.offset = state.offset
        stored.epoch = state.epoch
        stored.server_time.CopyFrom(now_timestamp())
        if self._history_size:
            state.history.append((state.offset, now, event))
            self._trim(state, now)
        result = PublishResult(collection_id, state.offset, state.epoch)
        if delta.client_message_id:
            self._dedupe[key] = result
        self.hub.dispatch(collection_id, event)
        return result

    async def history(
        self, collection_id: str, since_offset: int | None, epoch: str, limit: int
    ) -> HistorySlice:
        """See `Broker.history`. History holds the last `history_size` deltas for at most
        `history_ttl` seconds; a collection seen for the first time gets a new epoch.
        """
        state = self._collection(collection_id)
        self._trim(state, self._clock())
        oldest = state.history[0][0] if state.history else 0
        recovery = classify_recovery(since_offset, epoch, state.epoch, state.offset, oldest)
        result = HistorySlice(collection_id, state.epoch, state.offset, oldest, recovery)
        if since_offset is not None and recovery != sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH:
            events = [event for offset, _, event in state.history if offset > since_offset]
            result.events = events[:limit] if limit > 0 else events
        return result

    async def maintenance(self) -> None:
        """Drops collections nobody uses whose history has expired, so memory stays
        bounded by live collections (a later subscriber sees a new epoch: history lost)."""
        now = self._clock()
        for collection_id, state in list(self._collections.items()):
            self._trim(state, now)
            if (
                not state.history
                and not state.presence
                and state.snapshot is None
                and not self.hub.has(collection_id)
            ):
                del self._collections[collection_id]

    async def put_snapshot(
        self, collection_id: str, epoch: str, offset: int, data: bytes
    ) -> tuple[SnapshotOutcome, str, int]:
        """See `Broker.put_snapshot`; the snapshot lives while this process does (a
        collection holding one is never dropped by `maintenance`)."""
        state = self._collection(collection_id)
        if epoch and epoch != state.epoch:
            return "epoch_mismatch", state.epoch, state.offset
        if offset > state.offset:
            return "offset_ahead", state.epoch, state.offset
        stored = state.snapshot
        if stored is not None and stored.epoch == state.epoch and stored.offset > offset:
            return "outdated", state.epoch, stored.offset
        state.snapshot = StoredSnapshot(
            collection_id, state.epoch, offset, bytes(data), time.time_ns() // 1_000_000
        )
        return "stored", state.epoch, offset

    async def remove_history(self, collection_id: str) -> int:
        """See `Broker.remove_history`."""
        state = self._collections.get(collection_id)
        if state is None:
            return 0
        removed = len(state.history)
        state.history.clear()
        return removed

    async def get_snapshot(self, collection_id: str) -> StoredSnapshot | None:
        """See `Broker.get_snapshot`."""
        state = self._collections.get(collection_id)
        return None if state is None else state.snapshot

    async def attach(self, collection_id: str, sink: EventSink) -> None:
        """See `Broker.attach` (this node's `LocalHub`)."""
        self.hub.add(collection_id, sink)

    async def detach(self, collection_id: str, sink: EventSink) -> None:
        """See `Broker.detach`."""
        self.hub.remove(collection_id, sink)

    async def presence_join(
        self,
        collection_id: str,
        peer_id: str,
        user_info: types_pb2.UserInfo | None,
        status: str = "",
    ) -> None:
        """See `Broker.presence_join`; the entry lives in this process only."""
        entry = join_entry(collection_id, peer_id, user_info, status)
        self._collection(collection_id).presence[peer_id] = entry
        self.hub.dispatch(collection_id, join_event(entry))

    async def presence_update(self, presence: types_pb2.Presence) -> None:
        """See `Broker.presence_update` (fields as `presence_events.updated_entry` says)."""
        members = self._collection(presence.collection_id).presence
        entry = updated_entry(members.get(presence.peer_id), presence)
        members[presence.peer_id] = entry
        self.hub.dispatch(presence.collection_id, sync_pb2.SyncResponse(presence=entry))

    async def presence_leave(self, collection_id: str, peer_id: str, reason: str) -> None:
        """See `Broker.presence_leave`; an absent peer is ignored."""
        state = self._collections.get(collection_id)
        if state is None or state.presence.pop(peer_id, None) is None:
            return
        self.hub.dispatch(collection_id, leave_event(collection_id, peer_id, reason))

    async def presence_members(self, collection_id: str) -> list[types_pb2.Presence]:
        """See `Broker.presence_members`: this process's entries, in join order."""
        state = self._collections.get(collection_id)
        return list(state.presence.values()) if state is not None else []
