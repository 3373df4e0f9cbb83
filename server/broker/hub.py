"""Node-local fan-out: which sinks on this process want which collection's events."""

from __future__ import annotations

import logging

from syncwire.v1 import sync_pb2

from .base import EventSink

log = logging.getLogger(__name__)


class LocalHub:
    """Maps collection ids to the sinks attached on this node and dispatches to them.

    Both brokers use it: the memory broker dispatches as it publishes; the Redis broker
    dispatches what its subscription reader receives.
    """

    def __init__(self) -> None:
        self._sinks: dict[str, dict[EventSink, None]] = {}

    def add(self, collection_id: str, sink: EventSink) -> bool:
        """Attaches `sink`; returns True when it is the collection's first local sink."""
        sinks = self._sinks.setdefault(collection_id, {})
        sinks[sink] = None
        return len(sinks) == 1

    def remove(self, collection_id: str, sink: EventSink) -> bool:
        """Detaches `sink`; returns True when the collection has no local sink left."""
        sinks = self._sinks.get(collection_id)
        if sinks is None:
            return False
        sinks.pop(sink, None)
        if sinks:
            return False
        del self._sinks[collection_id]
        return True

    def collections(self) -> list[str]:
        """Ids of the collections with at least one sink on this node."""
        return list(self._sinks)

    def has(self, collection_id: str) -> bool:
        """Whether `collection_id` has a sink on this node."""
        return collection_id in self._sinks

    def dispatch(self, collection_id: str, event: sync_pb2.SyncResponse) -> None:
        """Hands `event` to every local sink of the collection, in attach order."""
        sinks = self._sinks.get(collection_id)
        if not sinks:
            return
        for sink in tuple(sinks):
            try:
                sink(event)
            except Exception:  # a broken sink must not starve the others
                log.exception("event sink failed", extra={"collection_id": collection_id})
