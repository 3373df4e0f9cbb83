"""Sharded pub/sub on Redis Cluster, shaped for the fan-out (`redis_fanout`).

redis-py's `ClusterPubSub` (redis >= 8.0) routes each `SSUBSCRIBE` to the master that
serves the channel's slot and keeps one pub/sub connection per such master. This
adapter reads every one of those connections at once (one reader task per master, so a
quiet shard never delays a busy one) and presents them as one stream with the message
kinds of a plain `PubSub` ("subscribe", "message", "pong"), which is all the fan-out
needs to keep its gap-free, duplicate-free delivery.

Whatever disturbs a shard subscription surfaces as an error, and the fan-out answers it
the way it answers any lost connection (refresh the topology, subscribe again, catch up
from history): a master that dies (its replica is promoted), and a slot migrated to
another master, which Redis announces by unsubscribing the slot's channels
(`sunsubscribe` pushed by the server).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from wire.tasks import cancel_and_wait

log = logging.getLogger(__name__)

READ_WAIT = 1.0
"""Seconds each reader waits for a message before looking again (bounds shutdown)."""

_KINDS = {"smessage": "message", "ssubscribe": "subscribe", "sunsubscribe": "unsubscribe"}


class ShardedPubSub:
    """One node's sharded subscriptions over every master of a cluster."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._pubsub: ClusterPubSub = cluster.pubsub()
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._leaving: set[bytes] = set()

    async def ping(self) -> None:
        """Checks every master answers (topology refreshed first); the answer arrives as
        a "pong" message, as on a plain PubSub."""
        await self._cluster.nodes_manager.initialize()
        await self._cluster.ping(target_nodes=RedisCluster.PRIMARIES)
        self._events.put_nowait({"type": "pong", "channel": None, "data": b"PONG"})

    async def subscribe(self, *channels: bytes) -> None:
        for channel in channels:
            self._leaving.discard(channel)
        await self._pubsub.ssubscribe(*channels)
        for name, pubsub in self._pubsub.node_pubsub_mapping.items():
            if name not in self._readers:
                self._readers[name] = asyncio.create_task(
                    self._read(pubsub), name=f"syncwire-redis-shard-{name}"
                )

    async def unsubscribe(self, channel: bytes) -> None:
        self._leaving.add(channel)
        await self._pubsub.sunsubscribe(channel)

    async def get_message(self, timeout: float) -> dict[str, Any] | None:
        """The next message of any shard, or None after `timeout` seconds. Raises what
        broke a shard's connection, or ConnectionError when Redis moved a subscribed
        channel's slot elsewhere."""
        try:
            async with asyncio.timeout(timeout):
                message = await self._events.get()
        except TimeoutError:
            return None
        if "error" in message:
            raise message["error"]
        kind = message["type"]
        kind = _KINDS.get(kind.decode() if isinstance(kind, bytes) else kind, kind)
        if kind == "unsubscribe":
            channel = message["channel"]
            if channel not in self._leaving:
                raise RedisConnectionError(f"shard channel {channel!r} moved to another node")
            self._leaving.discard(channel)
        return {**message, "type": kind}

    async def _read(self, pubsub: PubSub) -> None:
        try:
            while True:
                message = await pubsub.get_message(timeout=READ_WAIT)
                if message is not None:
                    self._events.put_nowait(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the fan-out, which reconnects
            self._events.put_nowait({"error": exc})

    async def aclose(self) -> None:
        for task in self._readers.values():
            task.cancel()
        for task in self._readers.values():
            await cancel_and_wait(task, log, "a sharded pub/sub reader")
        self._readers.clear()
        await self._pubsub.aclose()
