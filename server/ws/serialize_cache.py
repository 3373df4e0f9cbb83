"""Encode once per broadcast: when many calls write the same response object, serialize
it once.

Entries are keyed by object identity and hold the object, so an id cannot be reused
while cached. A call that writes the same object twice in a row gets it serialized
afresh (the usual "mutate and send again" loop stays correct). Objects written to
several calls must not be mutated in between; that is how broadcasts behave anyway.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Writer(Protocol):
    """A call writing responses; the cache keeps the token of its last write here."""

    last_token: int


@dataclass(slots=True)
class _Entry:
    message: Any
    serializer: Callable[[Any], bytes]
    payload: bytes
    token: int


class SerializationCache:
    """A small LRU of recently serialized response objects, shared by all connections."""

    def __init__(self, size: int = 128) -> None:
        self._size = size
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_token = 1
        self.hits = 0

    def serialize(self, message: Any, serializer: Callable[[Any], bytes], writer: Writer) -> bytes:
        """``serializer(message)``, reused when another call already serialized this very
        object. ``writer`` is the writing call; its ``last_token`` attribute is kept here."""
        if self._size <= 0:
            return serializer(message)
        key = id(message)
        entry = self._entries.get(key)
        if (
            entry is not None
            and entry.message is message
            and entry.serializer is serializer
            and writer.last_token != entry.token
        ):
            self._entries.move_to_end(key)
            self.hits += 1
        else:
            entry = _Entry(message, serializer, serializer(message), self._next_token)
            self._next_token += 1
            self._entries[key] = entry
            self._entries.move_to_end(key)
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        writer.last_token = entry.token
        return entry.payload
