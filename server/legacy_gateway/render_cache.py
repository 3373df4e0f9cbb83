"""Render each broadcast once: every legacy receiver of an event gets the same bytes.

Broker events are shared, never-mutated `SyncResponse` objects handed to every
subscriber, and the server heartbeat is one object delivered to every session. The
translator's output depends only on (message, wrapper flag), so a `BroadcastCache` keyed
by the object's identity and the flag turns N renders of a fan-out into one. Direct
replies (welcome, acks, errors) reach one connection only and skip the cache.
"""

from __future__ import annotations

from typing import Final

from server.broadcast_cache import MISSING, BroadcastCache
from server.legacy import render_for_legacy
from syncwire.v1 import sync_pb2

BROADCAST_KINDS: Final = frozenset({"delta", "peer_join", "peer_leave", "presence", "heartbeat"})
"""SyncResponse kinds the server fans out to many sessions."""

DEFAULT_SIZE: Final = 64


class LegacyRenderCache:
    """A per-server LRU of recent legacy renders of broadcast events."""

    __slots__ = ("_cache",)

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._cache: BroadcastCache[bytes | None] = BroadcastCache(size)

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def hits(self) -> int:
        """Renders saved so far."""
        return self._cache.hits

    def render(self, event: sync_pb2.SyncResponse, *, wrapper: bool) -> bytes | None:
        """`render_for_legacy(event, wrapper=wrapper)`, reused for the same object."""
        cache = self._cache
        if cache.size <= 0 or event.WhichOneof("kind") not in BROADCAST_KINDS:
            return render_for_legacy(event, wrapper=wrapper)
        rendered = cache.get(event, wrapper)
        if rendered is not MISSING:
            cache.hits += 1
            return rendered
        rendered = render_for_legacy(event, wrapper=wrapper)
        cache.put(event, wrapper, rendered)
        return rendered
