"""Presence entries and the events announcing them, built the same way by every broker."""

from __future__ import annotations

from syncwire.v1 import sync_pb2, types_pb2

from ..clock import now_timestamp


def join_entry(
    collection_id: str, peer_id: str, user_info: types_pb2.UserInfo | None
) -> types_pb2.Presence:
    """The presence entry recorded when a peer joins."""
    entry = types_pb2.Presence(
        collection_id=collection_id,
        peer_id=peer_id,
        action=types_pb2.PRESENCE_ACTION_JOIN,
        timestamp=now_timestamp(),
    )
    if user_info is not None:
        entry.user_info.CopyFrom(user_info)
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
