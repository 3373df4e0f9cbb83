"""Compute once per broadcast: one value per (object, variant), keyed by the object's identity.

Broker events and heartbeats are shared, never-mutated objects handed to every
subscriber, so an encoding of one (protobuf bytes for the WebSocket framing, a legacy
JSON render) is the same for every receiver. Entries hold the object, so its id cannot
be reused while cached. A small LRU (an OrderedDict: this is the fan-out hot path)
bounds memory.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final, Generic, Literal, TypeVar

ValueT = TypeVar("ValueT")


class _Missing(enum.Enum):
    MISSING = enum.auto()


MISSING: Final = _Missing.MISSING
"""What `BroadcastCache.get` returns when nothing is cached (None is a cacheable value)."""


class BroadcastCache(Generic[ValueT]):
    """An LRU of `size` values keyed by (object identity, variant); `size <= 0` disables it.

    `hits` counts the values reused (the caller decides and counts).
    """

    __slots__ = ("_entries", "hits", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[int, Hashable], tuple[object, ValueT]] = OrderedDict()
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, obj: object, variant: Hashable) -> ValueT | Literal[_Missing.MISSING]:
        """The value cached for this very object and variant (refreshing it), or MISSING."""
        key = (id(obj), variant)
        entry = self._entries.get(key)
        if entry is None or entry[0] is not obj:
            return MISSING
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, obj: object, variant: Hashable, value: ValueT) -> None:
        """Caches `value` for the object and variant, dropping the least recently used
        entry beyond `size`."""
        key = (id(obj), variant)
        self._entries[key] = (obj, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
