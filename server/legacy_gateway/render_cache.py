"""Render each broadcast once: every legacy receiver of an event gets the same bytes.

Broker events are shared, never-mutated `SyncResponse` objects handed to every
subscriber, and the server heartbeat is one object delivered to every session. The
translator's output depends only on (message, wrapper flag), so a small LRU keyed by the
object's identity and the flag turns N renders of a fan-out into one. Entries hold the
object, so its id cannot be reused while cached. Direct replies (welcome, acks, errors)
reach one connection only and skip the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from server.legacy import render_for_legacy
from syncwire.v1 import sync_pb2

BROADCAST_KINDS: Final = frozenset({"delta", "peer_join", "peer_leave", "presence", "heartbeat"})
"""SyncResponse kinds the server fans out to many sessions."""

DEFAULT_SIZE: Final = 64


class LegacyRenderCache:
    """A per-server LRU of recent legacy renders of broadcast events."""

    __slots__ = ("_entries", "_size", "hits")

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[int, bool], tuple[sync_pb2.SyncResponse, bytes | None]] = (
            OrderedDict()
        )
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def render(self, event: sync_pb2.SyncResponse, *, wrapper: bool) -> bytes | None:
        """`render_for_legacy(event, wrapper=wrapper)`, reused for the same object."""
        if self._size <= 0 or event.WhichOneof("kind") not in BROADCAST_KINDS:
            return render_for_legacy(event, wrapper=wrapper)
        key = (id(event), wrapper)
        entries = self._entries
        entry = entries.get(key)
        if entry is not None and entry[0] is event:
            entries.move_to_end(key)
            self.hits += 1
            return entry[1]
        rendered = render_for_legacy(event, wrapper=wrapper)
        entries[key] = (event, rendered)
        entries.move_to_end(key)
        if len(entries) > self._size:
            entries.popitem(last=False)
        return rendered
