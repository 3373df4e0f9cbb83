"""Presence entries and the events announcing them, built the same way by every broker.

Semantics of a peer's entry (docs/protocol.md "Presence"), field by field:
- JOIN records the entry: `status` as given ("" = none), `user_info` if given.
- UPDATE (and a JOIN of a peer already present) changes it: `status` is replaced by the
  request's (every request carries the whole status string; "" clears it); `user_info`
  is replaced as a whole when the request sets it and kept when the request omits it
  (no per-field merge inside UserInfo); `action` and `timestamp` are the latest
  request's.
- LEAVE removes it.
"""

from __future__ import annotations

from syncwire.v1 import sync_pb2, types_pb2

from ..clock import now_timestamp


def join_entry(
    collection_id: str, peer_id: str, user_info: types_pb2.UserInfo | None, status: str = ""
) -> types_pb2.Presence:
    """The presence entry recorded when a peer joins."""
    entry = types_pb2.Presence(
        collection_id=collection_id,
        peer_id=peer_id,
        action=types_pb2.PRESENCE_ACTION_JOIN,
        status=status,
        timestamp=now_timestamp(),
    )
    if user_info is not None:
        entry.user_info.CopyFrom(user_info)
    return entry


def updated_entry(
    previous: types_pb2.Presence | None, update: types_pb2.Presence
) -> types_pb2.Presence:
    """The entry after `update` on top of `previous` (see the module docstring): a new
    message; neither argument is changed."""
    entry = types_pb2.Presence()
    entry.CopyFrom(update)
    if not update.HasField("user_info") and previous is not None:
        if previous.HasField("user_info"):
            entry.user_info.CopyFrom(previous.user_info)
    return entry


def join_event(entry: types_pb2.Presence) -> sync_pb2.SyncResponse:
    """The PeerJoin announcing `entry`."""
    return sync_pb2.SyncResponse(
        peer_join=types_pb2.PeerJoin(
            collection_id=entry.collection_id,
            peer_id=entry.peer_id,
            user_info=entry.user_info if entry.HasField("user_info") else None,
            timestamp=entry.timestamp,
        )
    )


def leave_event(collection_id: str, peer_id: str, reason: str) -> sync_pb2.SyncResponse:
    """The PeerLeave announcing that a peer is gone and why."""
    return sync_pb2.SyncResponse(
        peer_leave=types_pb2.PeerLeave(
            collection_id=collection_id,
            peer_id=peer_id,
            timestamp=now_timestamp(),
            reason=reason,
        )
    )
