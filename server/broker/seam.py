"""The seam between a subscriber's history replay and its live delivery.

A subscriber is attached to live delivery first and reads history second, so nothing
published in between is missed. Live events that arrive meanwhile, and live deltas the
history already contained (the Redis broker's pub/sub reader may lag behind the history
read, on one node and across nodes), must not reach the subscriber a second time.
`LiveJoin` is the sink that joins both: it holds live events until the history read
says where it ended, then passes on only what lies beyond.
"""

from __future__ import annotations

from syncwire.v1 import sync_pb2

from .base import EventSink


class LiveJoin:
    """An event sink for one subscriber that joins history and live delivery with no
    gap and no duplicate.

    Until `go_live(epoch, offset)` it keeps live events; afterwards it forwards them to
    `deliver`, dropping every delta of the known epoch at or below the last offset the
    subscriber has (from the history read or from an earlier live delta). Events of
    another kind and deltas of a new epoch pass (an epoch change is announced first by
    the broker with an unsolicited `Subscribed`, which moves the position too: to its
    offset, or just before its `oldest_offset` when `replayed` deltas follow it).
    """

    __slots__ = ("_deliver", "_epoch", "_offset", "_pending")

    def __init__(self, deliver: EventSink) -> None:
        self._deliver = deliver
        self._pending: list[sync_pb2.SyncResponse] | None = []
        self._epoch = ""
        self._offset = 0

    @property
    def live(self) -> bool:
        """True once the history reply was applied and events pass straight through."""
        return self._pending is None

    def __call__(self, event: sync_pb2.SyncResponse) -> None:
        if self._pending is not None:
            self._pending.append(event)
            return
        if event.WhichOneof("kind") == "delta":  # _admit's common case, inlined
            delta = event.delta
            if delta.epoch == self._epoch and delta.offset <= self._offset:
                return  # already replayed or already delivered
            self._epoch, self._offset = delta.epoch, delta.offset
            self._deliver(event)
        elif self._admit(event):
            self._deliver(event)

    def go_live(self, epoch: str, offset: int) -> list[sync_pb2.SyncResponse]:
        """Records that the subscriber has the collection up to `offset` of `epoch`
        (what its replay ends with) and returns the held events it still needs, in
        arrival order; later events go straight to `deliver`."""
        pending, self._pending = self._pending or [], None
        self._epoch, self._offset = epoch, offset
        return [event for event in pending if self._admit(event)]

    def _admit(self, event: sync_pb2.SyncResponse) -> bool:
        kind = event.WhichOneof("kind")
        if kind == "delta":
            delta = event.delta
            if delta.epoch == self._epoch and delta.offset <= self._offset:
                return False  # already replayed or already delivered
            self._epoch, self._offset = delta.epoch, delta.offset
        elif kind == "subscribed" and event.request_id == 0:
            notice = event.subscribed  # the broker says where the collection now stands
            self._epoch, self._offset = notice.epoch, notice.offset
            if notice.recovery == sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH and notice.replayed:
                self._offset = notice.oldest_offset - 1  # the new epoch's held deltas follow
        return True
