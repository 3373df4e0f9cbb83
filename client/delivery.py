"""From server messages to application events: in order, once, and never a silent gap.

`Delivery` handles every message the link reads, synchronously and in stream order:
deltas at or below a subscription's offset are dropped (duplicates), a delta of an
unannounced epoch is reported before it is delivered, and every rejoin or unasked
notice becomes a `RecoveryEvent`. It never waits: when the application's buffer is full
a subscription pauses (its deltas are dropped without moving its offset) and
`resume_paused` rejoins it from that offset once the application has made room, so the
server replays exactly what was dropped while acknowledgements keep flowing. Presence
events that find the buffer full are dropped (counted in `presence_dropped`); once there
is room an `ErrorEvent` (RESOURCE_EXHAUSTED, "presence_events_dropped") names each
collection whose presence events were lost, so the application re-reads its presence.
Recovery notices and errors are few (bounded by subscriptions and requests) and always
delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from syncwire.v1 import sync_pb2, types_pb2

from .errors import RequestFailed
from .events import (
    DeltaEvent,
    ErrorEvent,
    PeerJoined,
    PeerLeft,
    PresenceChanged,
    Recovery,
    RecoveryEvent,
    SnapshotEvent,
    SyncEvent,
)
from .inbox import Inbox
from .link import SyncLink
from .stats import ClientStats
from .subscription import Subscription, to_recovery

Rejoin = Callable[[SyncLink, Subscription], Any]
"""Sends a Subscribe for the subscription on the link (from its current position)."""

Revoke = Callable[[str, RequestFailed], None]
"""Ends the subscription of a collection the server refused (and reports it)."""


class Delivery:
    """The client's handler of incoming messages; one per client, across links."""

    def __init__(
        self,
        subscriptions: Mapping[str, Subscription],
        inbox: Inbox[SyncEvent],
        stats: ClientStats,
        revoke: Revoke,
    ) -> None:
        self._subscriptions = subscriptions
        self._revoke = revoke
        self._inbox = inbox
        self._stats = stats
        self._paused = asyncio.Event()
        self._presence_lost: set[str] = set()

    def handle(self, link: SyncLink, response: sync_pb2.SyncResponse) -> None:
        """Handles one message (the link's reader calls it for each, in order)."""
        kind = response.WhichOneof("kind")
        if kind == "delta":
            self._on_delta(response.delta)
        elif kind == "snapshot":
            self._on_snapshot(response.snapshot)
        elif kind == "subscribed":
            self._on_subscribed(response.subscribed, solicited=response.request_id != 0)
        elif kind == "peer_join":
            self._deliver(response.peer_join.collection_id, PeerJoined(response.peer_join))
        elif kind == "peer_leave":
            self._deliver(response.peer_leave.collection_id, PeerLeft(response.peer_leave))
        elif kind == "presence":
            self._deliver(response.presence.collection_id, PresenceChanged(response.presence))
        elif kind == "error" and not link.is_pending(response.request_id):
            error = RequestFailed.from_proto(response.error)
            if (
                response.request_id == 0
                and error.code is grpc.StatusCode.PERMISSION_DENIED
                and error.collection_id in self._subscriptions
            ):
                self._revoke(error.collection_id, error)  # that subscription ends, not the link
            else:
                self._inbox.put(ErrorEvent(error))

    def _deliver(self, collection_id: str, event: SyncEvent) -> None:
        if collection_id not in self._subscriptions:
            return
        if self._inbox.full:
            self._stats.presence_dropped += 1
            self._presence_lost.add(collection_id)
            self._paused.set()  # resume_paused reports the loss once there is room
            return
        self._inbox.put(event)

    def _on_delta(self, delta: types_pb2.Delta) -> None:
        subscription = self._subscriptions.get(delta.collection_id)
        if subscription is None or not subscription.active:
            return
        if self._paused_for(subscription):
            self._stats.deltas_deferred += 1
            return
        if delta.epoch != subscription.epoch:
            # A new epoch without a notice: history moved on under us. Say so.
            self._inbox.put(
                RecoveryEvent(
                    delta.collection_id,
                    Recovery.EPOCH_MISMATCH,
                    epoch=delta.epoch,
                    offset=delta.offset,
                    previous_epoch=subscription.epoch,
                    previous_offset=subscription.offset,
                    unsolicited=True,
                )
            )
            self._stats.gaps += 1
        elif not subscription.accept(delta):
            self._stats.duplicates_dropped += 1
            return
        self._inbox.put(DeltaEvent(delta), delta.ByteSize())
        subscription.advance(delta)
        self._stats.deltas += 1

    def _paused_for(self, subscription: Subscription) -> bool:
        """True when the subscription is paused, pausing it now if the buffer is full
        (`resume_paused` rejoins it from its offset once there is room)."""
        if subscription.paused or self._inbox.full:
            if not subscription.paused:
                subscription.paused = True
                self._stats.pauses += 1
                self._paused.set()
            return True
        return False

    def _on_snapshot(self, snapshot: sync_pb2.Snapshot) -> None:
        """A snapshot after a SNAPSHOT join: delivered before the deltas after it, or,
        with no room, the subscription pauses and its rejoin asks for it again."""
        subscription = self._subscriptions.get(snapshot.collection_id)
        if subscription is None or not subscription.active:
            return
        if self._paused_for(subscription):
            return
        self._inbox.put(SnapshotEvent(snapshot), snapshot.ByteSize())
        subscription.restore(snapshot)

    def _on_subscribed(self, subscribed: sync_pb2.Subscribed, *, solicited: bool) -> None:
        subscription = self._subscriptions.get(subscribed.collection_id)
        if subscription is None:
            return
        first = solicited and not subscription.activated.done()
        recovery = to_recovery(subscribed.recovery)
        if not first:
            self._inbox.put(
                RecoveryEvent(
                    subscribed.collection_id,
                    recovery,
                    epoch=subscribed.epoch,
                    offset=subscribed.offset,
                    previous_epoch=subscription.epoch,
                    previous_offset=subscription.offset,
                    replayed=subscribed.replayed,
                    oldest_offset=subscribed.oldest_offset,
                    unsolicited=not solicited,
                )
            )
            if recovery.lost_deltas:
                self._stats.gaps += 1
        subscription.apply_joined(subscribed, solicited=solicited)

    async def resume_paused(self, link: SyncLink, rejoin: Rejoin) -> None:
        """Runs for one link: rejoins paused subscriptions (Unsubscribe, then Subscribe
        from their offset) whenever the application has read half of its buffer."""
        while link.alive:
            await self._paused.wait()
            await self._inbox.wait_for_room()
            self._paused.clear()
            self._report_presence_lost()
            for subscription in list(self._subscriptions.values()):
                if subscription.paused and subscription.sent_on(link) and link.alive:
                    link.send(
                        unsubscribe=sync_pb2.Unsubscribe(collection_id=subscription.collection_id)
                    )
                    subscription.detach()
                    rejoin(link, subscription)

    def _report_presence_lost(self) -> None:
        lost, self._presence_lost = self._presence_lost, set()
        for collection_id in sorted(lost):
            if collection_id in self._subscriptions:
                error = RequestFailed(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"presence events of {collection_id!r} were dropped while the event "
                    "buffer was full; call presence() for the current members",
                    reason_code="presence_events_dropped",
                    collection_id=collection_id,
                )
                self._inbox.put(ErrorEvent(error, "presence"))
