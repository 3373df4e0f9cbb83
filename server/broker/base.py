"""The Broker interface: fan-out, offsets/history, presence and de-duplication.

The servicer and sessions only ever talk to a `Broker`; the in-memory broker and the
Redis broker implement it, so scaling out never touches the servicer. Events reach the
node's local subscribers through `attach`ed sinks: plain callables that must not block
(they enqueue). Event objects are shared by every subscriber and must never be mutated.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from google.protobuf.timestamp_pb2 import Timestamp

from syncwire.v1 import sync_pb2, types_pb2

EventSink = Callable[[sync_pb2.SyncResponse], None]
"""Receives events of an attached collection: delta, peer_join, peer_leave, presence."""

RecoveryStatus = sync_pb2.RecoveryStatus


class BrokerError(Exception):
    """The broker cannot serve the request right now (for example Redis is down).

    `retry_after_ms` is the broker's hint of when a retry may succeed; callers answer
    UNAVAILABLE with reason `broker_unavailable` and this hint (`errors.broker_unavailable`).
    """

    def __init__(self, message: str, *, retry_after_ms: int = 1000) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Outcome of a publish: the assigned position, or the first one for a duplicate."""

    collection_id: str
    offset: int
    epoch: str
    duplicate: bool = False

    def to_ack(self, client_message_id: str) -> sync_pb2.PublishAck:
        """The `PublishAck` of this result for the publish that carried `client_message_id`.
        """
        return sync_pb2.PublishAck(
            collection_id=self.collection_id,
            offset=self.offset,
            epoch=self.epoch,
            client_message_id=client_message_id,
            duplicate=self.duplicate,
        )


@dataclass(slots=True)
class HistorySlice:
    """Deltas of a collection after an offset, and how far they reach.

    `events` are SyncResponse(delta=...) objects in offset order, shared and read-only.
    """

    collection_id: str
    epoch: str
    offset: int
    oldest_offset: int
    recovery: int = sync_pb2.RECOVERY_STATUS_UNSPECIFIED
    events: list[sync_pb2.SyncResponse] = field(default_factory=list)


SnapshotOutcome = Literal["stored", "epoch_mismatch", "offset_ahead", "outdated"]
"""What `Broker.put_snapshot` did: stored it, or refused it because its epoch is not the
collection's current one, its offset is beyond the collection's latest offset, or the
stored snapshot is newer (a higher offset in the current epoch)."""


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """A collection's snapshot as the broker holds it: `data` is the state including
    every delta up to `offset` of `epoch`; `created_at_ms` is POSIX milliseconds."""

    collection_id: str
    epoch: str
    offset: int
    data: bytes
    created_at_ms: int

    def to_response(self) -> sync_pb2.SyncResponse:
        """The `SyncResponse(snapshot=...)` a subscriber receives."""
        created_at = Timestamp()
        created_at.FromMilliseconds(self.created_at_ms)
        return sync_pb2.SyncResponse(
            snapshot=sync_pb2.Snapshot(
                collection_id=self.collection_id,
                epoch=self.epoch,
                offset=self.offset,
                data=self.data,
                created_at=created_at,
            )
        )

    def covers(self, history: HistorySlice) -> bool:
        """Whether this snapshot and `history` (read from offset 0, or from an offset
        at or before this snapshot's) together hold the whole collection: same epoch,
        not beyond the latest offset, and history retains every delta after it."""
        if self.epoch != history.epoch or self.offset > history.offset:
            return False
        if self.offset == history.offset:
            return True
        return 0 < history.oldest_offset <= self.offset + 1


def classify_recovery(
    since_offset: int | None,
    epoch: str,
    current_epoch: str,
    offset: int,
    oldest_offset: int,
) -> int:
    """Says what a subscriber asking for `since_offset` in `epoch` can get.

    An empty `epoch` means the client does not know one and accepts the current epoch.
    """
    if since_offset is None:
        return sync_pb2.RECOVERY_STATUS_UNSPECIFIED
    if epoch and epoch != current_epoch:
        return sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH
    if since_offset > offset:
        return sync_pb2.RECOVERY_STATUS_OFFSET_AHEAD
    if since_offset < offset and (oldest_offset == 0 or since_offset + 1 < oldest_offset):
        return sync_pb2.RECOVERY_STATUS_GAP_TOO_OLD
    return sync_pb2.RECOVERY_STATUS_RECOVERED


class Broker(ABC):
    """Owns fan-out, per-collection offsets and history, presence and idempotency."""

    join_pause: Callable[[str], Awaitable[None]] | None = None
    """Test hook: awaited (with the collection id) by `join` between attaching to live
    delivery and reading history, the window where a seam fault would show."""

    async def join(
        self,
        collection_id: str,
        sink: EventSink,
        since_offset: int | None,
        epoch: str,
        limit: int,
    ) -> HistorySlice:
        """Attaches `sink`, then reads history as `history` does: together they miss
        nothing published meanwhile. The sink (a `seam.LiveJoin`) sorts out what both
        delivered. On failure the sink is detached again and the error raised
        (BrokerError while the backing store is away)."""
        await self.attach(collection_id, sink)
        try:
            if self.join_pause is not None:
                await self.join_pause(collection_id)
            return await self.history(collection_id, since_offset, epoch, limit)
        except BaseException:
            await self.detach(collection_id, sink)
            raise

    @abstractmethod
    async def start(self) -> None:
        """Connects to the backing store (if any) and starts background work."""

    @abstractmethod
    async def close(self) -> None:
        """Stops background work and releases connections."""

    @abstractmethod
    async def publish(self, delta: types_pb2.Delta) -> PublishResult:
        """Assigns the next offset of `delta.collection_id`, stores it in history and fans
        it out to every subscriber on every node.

        `delta.client_message_id`, when set, makes the call idempotent: a repeat returns
        the first result with `duplicate=True` and is not delivered again. The broker fills
        offset, epoch and server_time; the caller fills peer_id.
        """

    @abstractmethod
    async def history(
        self, collection_id: str, since_offset: int | None, epoch: str, limit: int
    ) -> HistorySlice:
        """Returns up to `limit` deltas with offset > `since_offset` (none when
        `since_offset` is None), with the collection's epoch and bounds."""

    @abstractmethod
    async def attach(self, collection_id: str, sink: EventSink) -> None:
        """Starts delivering the collection's events to `sink` (on this node)."""

    @abstractmethod
    async def detach(self, collection_id: str, sink: EventSink) -> None:
        """Stops delivering to `sink`; unknown sinks are ignored."""

    @abstractmethod
    async def presence_join(
        self,
        collection_id: str,
        peer_id: str,
        user_info: types_pb2.UserInfo | None,
        status: str = "",
    ) -> None:
        """Records the peer as present (with `status` and `user_info`) and broadcasts a
        PeerJoin."""

    @abstractmethod
    async def presence_update(self, presence: types_pb2.Presence) -> None:
        """Applies `presence` to the peer's entry (`presence_events.updated_entry`:
        status replaced, user_info kept when unset) and broadcasts the resulting entry
        as a Presence event."""

    @abstractmethod
    async def presence_leave(self, collection_id: str, peer_id: str, reason: str) -> None:
        """Forgets the peer and broadcasts a PeerLeave (only if it was present)."""

    @abstractmethod
    async def presence_members(self, collection_id: str) -> list[types_pb2.Presence]:
        """The peers present in the collection, with their latest state."""

    @abstractmethod
    async def put_snapshot(
        self, collection_id: str, epoch: str, offset: int, data: bytes
    ) -> tuple[SnapshotOutcome, str, int]:
        """Makes `data` the collection's snapshot at `offset` of `epoch` (empty: the
        current epoch) unless refused (see `SnapshotOutcome`). Returns the outcome, the
        collection's current epoch and: the stored offset ("stored"), the latest offset
        ("offset_ahead", "epoch_mismatch") or the newer snapshot's offset ("outdated").
        The snapshot lives as long as the collection's epoch and offsets do."""

    @abstractmethod
    async def remove_history(self, collection_id: str) -> int:
        """Drops the collection's history (its epoch and latest offset stay, so a
        recovering subscriber is told GAP_TOO_OLD, or gets the snapshot); returns how
        many deltas it held."""

    @abstractmethod
    async def get_snapshot(self, collection_id: str) -> StoredSnapshot | None:
        """The collection's latest snapshot (of any epoch: callers compare), or None."""

    async def presence_refresh(self, entries: list[tuple[str, str]]) -> None:
        """Keeps (collection_id, peer_id) presence entries alive; brokers whose entries
        expire on their own (Redis) override this. Called every heartbeat interval."""
        del entries

    async def maintenance(self) -> None:  # noqa: B027 - optional hook
        """Periodic housekeeping (expiry, pruning); called every heartbeat interval."""

    @property
    def healthy(self) -> bool:
        """False while the backing store is unreachable."""
        return True

    async def wait_healthy(self, healthy: bool) -> None:
        """Returns once `self.healthy` equals `healthy`. A broker without a backing store
        is always healthy, so waiting for False never returns."""
        if self.healthy != healthy:
            await asyncio.Event().wait()
