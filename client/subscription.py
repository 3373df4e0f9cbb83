"""A subscription handle: where the client stands in one collection.

The client keeps one `Subscription` per collection across reconnects. Its epoch and
offset are the position of the last delta delivered to the application; they are what
the client sends when it rejoins, and what it uses to drop deltas it already has.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from syncwire.v1 import sync_pb2, types_pb2

from .events import Recovery

if TYPE_CHECKING:
    from .link import SyncLink
    from .sync_client import SyncClient


class Subscription:
    """Handle returned by `SyncClient.subscribe`.

    Attributes:
        collection_id: The collection.
        join_presence: Whether this client is announced in the collection's presence.
        user_info: What presence shows about this client.
    """

    def __init__(
        self,
        client: SyncClient,
        collection_id: str,
        *,
        join_presence: bool,
        user_info: types_pb2.UserInfo | None,
        last_offset: int | None,
        epoch: str,
    ) -> None:
        self._client = client
        self.collection_id = collection_id
        self.join_presence = join_presence
        self.user_info = user_info
        self._epoch = epoch
        self._offset = last_offset or 0
        self._has_position = last_offset is not None
        self._recovery = Recovery.NONE
        self._server_offset = 0
        self._oldest_offset = 0
        self._initial_data = b""
        self._active = False
        self._link: SyncLink | None = None
        self.paused = False
        """True while deltas are dropped because the application's buffer is full."""
        self.presence: sync_pb2.SetPresence | None = None
        """The last presence this client set here; restored after a reconnect."""
        self.activated: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return (
            f"Subscription({self.collection_id!r}, epoch={self._epoch!r}, "
            f"offset={self._offset}, recovery={self._recovery.name}, active={self._active})"
        )

    # ------------------------------------------------------------ public view

    @property
    def epoch(self) -> str:
        """The collection's history epoch as this client knows it."""
        return self._epoch

    @property
    def offset(self) -> int:
        """Offset of the last delta delivered (or the collection's offset when joined)."""
        return self._offset

    @property
    def recovery(self) -> Recovery:
        """Outcome of the latest (re)join."""
        return self._recovery

    @property
    def server_offset(self) -> int:
        """The collection's latest offset when the server last answered a join: the
        wire's `Subscribed.offset` (`HistorySlice.offset` on the server). Named apart
        because `offset` here is this client's own position (the last delta delivered)."""
        return self._server_offset

    @property
    def oldest_offset(self) -> int:
        """Oldest offset the server still had in history when it last answered."""
        return self._oldest_offset

    @property
    def initial_data(self) -> bytes:
        """What the application's subscribe hook gave this client at the latest (re)join
        (`Subscribed.initial_data`); b"" when nothing."""
        return self._initial_data

    @property
    def active(self) -> bool:
        """True while the server delivers this collection on the current connection."""
        return self._active

    async def unsubscribe(self) -> None:
        """Leaves the collection (`SyncClient.unsubscribe`); raises SyncError as it does."""
        await self._client.unsubscribe(self.collection_id)

    # ---------------------------------------------------------------- internal

    def subscribe_message(self) -> sync_pb2.Subscribe:
        """What to send to (re)join: with the position, if the client has one."""
        message = sync_pb2.Subscribe(
            collection_id=self.collection_id,
            join_presence=self.join_presence,
            epoch=self._epoch,
        )
        if self._has_position:
            message.last_offset = self._offset
        if self.user_info is not None:
            message.user_info.CopyFrom(self.user_info)
        return message

    def sent_on(self, link: SyncLink | None) -> bool:
        """Whether the Subscribe went out on `link` (the current connection)."""
        return link is not None and self._link is link

    def mark_sent(self, link: SyncLink) -> None:
        """Records that the Subscribe went out on `link`; inactive until answered."""
        self._link = link
        self._active = False

    def detach(self) -> None:
        """The connection is gone; the next one rejoins."""
        self._link = None
        self._active = False

    def apply_joined(self, subscribed: sync_pb2.Subscribed, *, solicited: bool) -> None:
        """Takes the server's answer (or unasked notice) into the position.

        After RECOVERED or GAP_TOO_OLD the replay continues from the client's offset.
        After SNAPSHOT the position is 0 of the current epoch until the Snapshot that
        follows is delivered (`restore`); if it cannot be, a rejoin asks for it again.
        After an EPOCH_MISMATCH answer or notice with replayed deltas, the server replays
        the new epoch from the oldest offset it holds, so the position starts just before
        it. In every other case the server's offset is the new starting point (nothing
        older will come, and a new epoch restarts numbering).
        """
        recovery = to_recovery(subscribed.recovery)
        keep = recovery in (Recovery.RECOVERED, Recovery.GAP_TOO_OLD) and self._has_position
        if recovery is Recovery.SNAPSHOT:
            self._offset = 0  # the Snapshot that follows sets the position (`restore`)
        elif recovery is Recovery.EPOCH_MISMATCH and subscribed.replayed:
            self._offset = max(subscribed.oldest_offset - 1, 0)
        elif not keep:
            self._offset = subscribed.offset
        elif not solicited:
            self._offset = max(self._offset, subscribed.offset)
        self._epoch = subscribed.epoch
        self._has_position = True
        self._recovery = recovery
        self._server_offset = subscribed.offset
        self._oldest_offset = subscribed.oldest_offset
        if solicited:
            self._initial_data = subscribed.initial_data
            self._active = True
            self.paused = False

    def accept(self, delta: types_pb2.Delta) -> bool:
        """Whether `delta` is new (above the offset) in the current epoch."""
        return delta.epoch == self._epoch and delta.offset > self._offset

    def restore(self, snapshot: sync_pb2.Snapshot) -> None:
        """Moves the position to `snapshot` (its epoch and offset), once delivered."""
        self._epoch = snapshot.epoch
        self._offset = snapshot.offset
        self._has_position = True

    def advance(self, delta: types_pb2.Delta) -> None:
        """Moves the position to `delta` (its epoch and offset), once delivered."""
        self._epoch = delta.epoch
        self._offset = delta.offset
        self._has_position = True


def to_recovery(value: int) -> Recovery:
    """The Recovery for a RecoveryStatus number (NONE for unknown numbers)."""
    try:
        return Recovery(value)
    except ValueError:
        return Recovery.NONE
