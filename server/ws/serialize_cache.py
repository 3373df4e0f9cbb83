"""Encode once per broadcast: when many calls write the same response object, serialize
it once (a `BroadcastCache` keyed by the object and its serializer).

A call that writes the same object twice in a row gets it serialized afresh (the usual
"mutate and send again" loop stays correct). Objects written to several calls must not
be mutated in between; that is how broadcasts behave anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from server.broadcast_cache import MISSING, BroadcastCache


class Writer(Protocol):
    """A call writing responses; the cache keeps the token of its last write here."""

    last_token: int


class SerializationCache:
    """A small LRU of recently serialized response objects, shared by all connections."""

    def __init__(self, size: int = 128) -> None:
        # (payload, token): the token tells a writer's repeated write of one object.
        self._cache: BroadcastCache[tuple[bytes, int]] = BroadcastCache(size)
        self._next_token = 1

    @property
    def hits(self) -> int:
        """Serializations saved so far."""
        return self._cache.hits

    def serialize(self, message: Any, serializer: Callable[[Any], bytes], writer: Writer) -> bytes:
        """``serializer(message)``, reused when another call already serialized this very
        object. ``writer`` is the writing call; its ``last_token`` attribute is kept here."""
        cache = self._cache
        if cache.size <= 0:
            return serializer(message)
        entry = cache.get(message, serializer)
        if entry is MISSING or writer.last_token == entry[1]:
            entry = (serializer(message), self._next_token)
            self._next_token += 1
            cache.put(message, serializer, entry)
        else:
            cache.hits += 1
        writer.last_token = entry[1]
        return entry[0]
