"""What `async for event in client` yields: typed, immutable event objects.

Deltas and presence wrap the protobuf messages the server sent (read-only by
convention); recovery notices are plain dataclasses so a gap can never hide inside a
message the application forgets to inspect.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from syncwire.v1 import sync_pb2, types_pb2

from .errors import RequestFailed, TokenRefusedError


class Recovery(enum.IntEnum):
    """Outcome of (re)joining a collection; values mirror `syncwire.v1.RecoveryStatus`."""

    NONE = sync_pb2.RECOVERY_STATUS_UNSPECIFIED
    """No recovery asked for: the subscription started live."""
    RECOVERED = sync_pb2.RECOVERY_STATUS_RECOVERED
    """Everything missed was replayed: no gap."""
    EPOCH_MISMATCH = sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH
    """The server's history was lost or reset: resynchronise from your own state."""
    GAP_TOO_OLD = sync_pb2.RECOVERY_STATUS_GAP_TOO_OLD
    """History no longer reaches back far enough: deltas in between are gone."""
    OFFSET_AHEAD = sync_pb2.RECOVERY_STATUS_OFFSET_AHEAD
    """The client knew more than the server (its history was reset)."""
    SNAPSHOT = sync_pb2.RECOVERY_STATUS_SNAPSHOT
    """History could not cover the position, the collection's snapshot could: a
    `SnapshotEvent` comes next (replace your state with it), then every later delta."""

    @property
    def lost_deltas(self) -> bool:
        """True when deltas may be missing and the application must resynchronise."""
        return self in (Recovery.EPOCH_MISMATCH, Recovery.GAP_TOO_OLD, Recovery.OFFSET_AHEAD)


@dataclass(frozen=True, slots=True)
class DeltaEvent:
    """A delta of a subscribed collection, delivered once, in offset order."""

    delta: types_pb2.Delta

    @property
    def collection_id(self) -> str:
        """The delta's collection."""
        return self.delta.collection_id

    @property
    def offset(self) -> int:
        """The delta's offset in its collection (from 1, per epoch)."""
        return self.delta.offset

    @property
    def epoch(self) -> str:
        """The history epoch the offset belongs to."""
        return self.delta.epoch

    @property
    def data(self) -> bytes:
        """The delta's payload bytes."""
        return self.delta.delta


@dataclass(frozen=True, slots=True)
class SnapshotEvent:
    """The collection's whole state at `offset` (after a join answered
    `Recovery.SNAPSHOT`): replace the application's state of the collection with
    `data`; the `DeltaEvent`s that follow continue from `offset + 1`, once each."""

    snapshot: sync_pb2.Snapshot

    @property
    def collection_id(self) -> str:
        """The snapshot's collection."""
        return self.snapshot.collection_id

    @property
    def offset(self) -> int:
        """The state includes every delta up to this offset."""
        return self.snapshot.offset

    @property
    def epoch(self) -> str:
        """The history epoch of `offset`."""
        return self.snapshot.epoch

    @property
    def data(self) -> bytes:
        """The application's encoded state."""
        return self.snapshot.data


@dataclass(frozen=True, slots=True)
class PeerJoined:
    """A peer joined the presence of a subscribed collection."""

    join: types_pb2.PeerJoin

    @property
    def collection_id(self) -> str:
        """The collection the peer joined."""
        return self.join.collection_id


@dataclass(frozen=True, slots=True)
class PeerLeft:
    """A peer left the presence of a subscribed collection."""

    leave: types_pb2.PeerLeave

    @property
    def collection_id(self) -> str:
        """The collection the peer left."""
        return self.leave.collection_id


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """A peer updated its presence state (for example "typing")."""

    presence: types_pb2.Presence

    @property
    def collection_id(self) -> str:
        """The collection of the presence entry."""
        return self.presence.collection_id


@dataclass(frozen=True, slots=True)
class RecoveryEvent:
    """The server's answer when a collection was rejoined after a reconnect, or its
    unasked notice that the collection's history moved on (`unsolicited`).

    Attributes:
        collection_id: The collection.
        recovery: The outcome; `recovery.lost_deltas` says whether to resynchronise.
        epoch: The collection's epoch now.
        offset: The collection's latest offset when the server answered.
        previous_epoch: The epoch the client had.
        previous_offset: The last offset the client had received.
        replayed: How many missed deltas the server replays (they follow this event).
        oldest_offset: Oldest offset the server still has in history.
        unsolicited: True for a notice the server pushed without a resubscribe.
    """

    collection_id: str
    recovery: Recovery
    epoch: str
    offset: int
    previous_epoch: str
    previous_offset: int
    replayed: int = 0
    oldest_offset: int = 0
    unsolicited: bool = False


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """A server error nobody awaits: a presence update refused, a subscription ended by
    the server (a resubscribe refused for good, or PERMISSION_DENIED pushed for a collection the
    refreshed token no longer grants: `error.collection_id` names it and the subscription
    is dropped; the connection carries on), or a publish left by an earlier process
    refused."""

    error: RequestFailed
    request: str = ""
    """What was refused: "subscribe", "presence", "publish" or "" (unknown)."""


@dataclass(frozen=True, slots=True)
class TokenRefused:
    """Terminal: the server refused the token provider's token twice in a row. The
    client stopped reconnecting; its state is OFFLINE with the same `error`.
    `SyncClient.reconnect()` starts again (asking the provider for a new token)."""

    error: TokenRefusedError


SyncEvent = (
    DeltaEvent
    | SnapshotEvent
    | PeerJoined
    | PeerLeft
    | PresenceChanged
    | RecoveryEvent
    | ErrorEvent
    | TokenRefused
)
"""Everything `SyncClient.events()` yields."""
