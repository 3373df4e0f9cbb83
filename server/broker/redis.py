"""The scale-out broker: several server processes share collections through Redis.

Offsets, history, idempotency keys and presence live in Redis and change only through
atomic scripts (`redis_scripts`); each node keeps one pub/sub connection and fans
events out to its own sessions (`redis_fanout`). Nothing is queued while Redis is away:
calls fail fast with `BrokerError` (sessions answer UNAVAILABLE with a retry hint),
and the node reconnects with backoff and catches its subscribers up by itself.

URL: `redis://[[user]:password@]host:port/db` (or `rediss://`); an optional query
parameter `key_prefix=NAME` (default "syncwire") separates deployments sharing one Redis.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from redis.backoff import EqualJitterBackoff

from syncwire.v1 import sync_pb2, types_pb2

from .base import (
    Broker,
    BrokerError,
    EventSink,
    HistorySlice,
    PublishResult,
    SnapshotOutcome,
    StoredSnapshot,
)
from .hub import LocalHub
from .presence_events import join_entry, join_event, leave_event, updated_entry
from .redis_connect import RedisTarget
from .redis_fanout import FanoutStats, RedisFanout
from .redis_keys import KeySpace
from .redis_store import RedisStore

log = logging.getLogger(__name__)

DAY = 86400.0


class RedisBroker(Broker):
    """Broker whose state is shared by every node connected to the same Redis."""

    def __init__(
        self,
        url: str,
        *,
        history_size: int = 1000,
        history_ttl: float = 3600.0,
        dedupe_ttl: float = DAY,
        presence_ttl: float = 90.0,
        meta_ttl: float = 30 * DAY,
        key_prefix: str | None = None,
        op_timeout: float = 2.0,
        ping_interval: float = 5.0,
        reconnect_base: float = 0.1,
        reconnect_cap: float = 5.0,
        max_connections: int = 64,
        durable: bool = False,
    ) -> None:
        """`presence_ttl`: how long a presence entry lives without `presence_refresh`;
        `meta_ttl`: how long an idle collection keeps its epoch and offset counter;
        `op_timeout`: bound of every Redis call and of each connect attempt (seconds);
        `durable`: the operator declares that Redis loses no acknowledged write
        (`appendonly yes`, `appendfsync always`, verified on every connect), so a Redis
        restart keeps epochs; otherwise any new Redis process starts new epochs."""
        target = RedisTarget.parse(url)
        self.target = target
        self.keys = KeySpace(key_prefix or target.key_prefix)
        self.hub = LocalHub()
        self._op_timeout = op_timeout
        self._store = RedisStore(
            target,
            self.keys,
            history_size=history_size,
            history_ttl=history_ttl,
            dedupe_ttl=dedupe_ttl,
            presence_ttl=presence_ttl,
            meta_ttl=meta_ttl,
            op_timeout=op_timeout,
            max_connections=max_connections,
            durable=durable,
        )
        self._fanout = RedisFanout(
            target,
            self.keys,
            self.hub,
            self._store,
            op_timeout=op_timeout,
            ping_interval=ping_interval,
            backoff=EqualJitterBackoff(cap=reconnect_cap, base=reconnect_base),
        )
        # Presence this node has set, so it can be restored if Redis loses it.
        self._local_presence: dict[tuple[str, str], types_pb2.Presence] = {}
        self.expired_peers = 0

    # --------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Connects (waiting up to the operation timeout; later in the background).
        Raises BrokerError when the URL names one Redis but it is a Cluster node, or
        durability was declared but Redis is not durable."""
        await self._fanout.start(wait=self._op_timeout)
        problem = self._store.setup_problem or self._store.durability_problem
        if problem:
            await self.close()
            raise BrokerError(problem)

    async def close(self) -> None:
        """Stops the pub/sub reader and closes both Redis connection pools."""
        await self._fanout.close()
        await self._store.close()
        self._local_presence.clear()

    @property
    def healthy(self) -> bool:
        """True while the pub/sub connection to Redis is up (health follows it)."""
        return self._fanout.connected

    @property
    def stats(self) -> FanoutStats:
        """Connection and catch-up counters of this node."""
        return self._fanout.stats

    async def wait_connected(self, connected: bool = True) -> None:
        """Waits until the node is (or, with False, is no longer) connected to Redis."""
        await self._fanout.wait_state(connected)

    async def wait_healthy(self, healthy: bool) -> None:
        """Returns once `healthy` equals `healthy` (the argument)."""
        await self._fanout.wait_state(healthy)

    def _require_redis(self) -> None:
        if not self._fanout.connected:
            raise BrokerError("redis unavailable (reconnecting)")

    # ------------------------------------------------------------------ deltas

    async def publish(self, delta: types_pb2.Delta) -> PublishResult:
        """See `Broker.publish`: one Lua script assigns the offset, appends to the history
        stream, records the client message id and publishes (redis_scripts.PUBLISH).
        Raises BrokerError while Redis is unreachable or slower than `--broker-timeout`.
        """
        self._require_redis()
        return await self._store.publish(delta)

    async def history(
        self, collection_id: str, since_offset: int | None, epoch: str, limit: int
    ) -> HistorySlice:
        """See `Broker.history` (the collection's Redis stream). Raises BrokerError while
        Redis is unreachable.
        """
        self._require_redis()
        return await self._store.history(collection_id, since_offset, epoch, limit)

    async def put_snapshot(
        self, collection_id: str, epoch: str, offset: int, data: bytes
    ) -> tuple[SnapshotOutcome, str, int]:
        """See `Broker.put_snapshot`: stored in the collection's meta hash, so it lives
        as long as the epoch and offset counter (`meta_ttl` after the collection's last
        publish or read). Raises BrokerError while Redis is unreachable."""
        self._require_redis()
        return await self._store.put_snapshot(collection_id, epoch, offset, data)

    async def remove_history(self, collection_id: str) -> int:
        """See `Broker.remove_history`. Raises BrokerError while Redis is unreachable."""
        self._require_redis()
        return await self._store.remove_history(collection_id)

    async def get_snapshot(self, collection_id: str) -> StoredSnapshot | None:
        """See `Broker.get_snapshot`. Raises BrokerError while Redis is unreachable."""
        self._require_redis()
        return await self._store.get_snapshot(collection_id)

    async def attach(self, collection_id: str, sink: EventSink) -> None:
        """See `Broker.attach`: also subscribes this node to the collection's channel;
        raises BrokerError (and detaches again) when Redis is unreachable.
        """
        self.hub.add(collection_id, sink)
        try:
            await self._fanout.track(collection_id)
        except BaseException:
            await self.detach(collection_id, sink)
            raise

    async def detach(self, collection_id: str, sink: EventSink) -> None:
        """See `Broker.detach`; the channel is unsubscribed when its last local sink goes.
        """
        if self.hub.remove(collection_id, sink):
            await self._fanout.untrack(collection_id)

    # ---------------------------------------------------------------- presence

    async def presence_join(
        self,
        collection_id: str,
        peer_id: str,
        user_info: types_pb2.UserInfo | None,
        status: str = "",
    ) -> None:
        """See `Broker.presence_join`: the entry is stored in Redis with a TTL refreshed
        by this node and announced on the collection's channel. Raises BrokerError.
        """
        self._require_redis()
        entry = join_entry(collection_id, peer_id, user_info, status)
        await self._store.presence_set(entry, join_event(entry))
        self._local_presence[(collection_id, peer_id)] = entry

    async def presence_update(self, presence: types_pb2.Presence) -> None:
        """See `Broker.presence_update`. Raises BrokerError while Redis is unreachable."""
        # Only the peer's own session (on this node) changes its entry, so the node's
        # copy is the entry the update applies to.
        self._require_redis()
        key = (presence.collection_id, presence.peer_id)
        entry = updated_entry(self._local_presence.get(key), presence)
        await self._store.presence_set(entry, sync_pb2.SyncResponse(presence=entry))
        self._local_presence[key] = entry

    async def presence_leave(self, collection_id: str, peer_id: str, reason: str) -> None:
        """See `Broker.presence_leave`. Forgotten on this node at once; while Redis is
        away the Redis entry expires by its TTL instead (BrokerError is raised).
        """
        # Forgotten locally first: if Redis is away the entry simply expires there.
        self._local_presence.pop((collection_id, peer_id), None)
        self._require_redis()
        await self._store.presence_leave(
            collection_id, peer_id, leave_event(collection_id, peer_id, reason)
        )

    async def presence_members(self, collection_id: str) -> list[types_pb2.Presence]:
        """See `Broker.presence_members` (every node's entries). Raises BrokerError."""
        self._require_redis()
        return await self._store.presence_members(collection_id)

    async def presence_refresh(self, entries: list[tuple[str, str]]) -> None:
        """Extends this node's entries; re-creates (and announces) any Redis lost."""
        wanted = set(entries)
        for key in [key for key in self._local_presence if key not in wanted]:
            del self._local_presence[key]
        if not wanted or not self._fanout.connected:
            return
        peers: defaultdict[str, list[str]] = defaultdict(list)
        for collection_id, peer_id in wanted:
            peers[collection_id].append(peer_id)
        try:
            missing = await self._store.presence_refresh(peers)
            for collection_id, lost in missing.items():
                for peer_id in lost:
                    entry = self._local_presence.get((collection_id, peer_id))
                    if entry is None:
                        entry = join_entry(collection_id, peer_id, None)
                        self._local_presence[(collection_id, peer_id)] = entry
                    await self._store.presence_set(entry, join_event(entry), only_if_absent=True)
        except BrokerError as exc:
            log.warning("presence refresh failed: %s", exc)

    async def maintenance(self) -> None:
        """Removes expired presence entries of the collections this node serves and
        announces each removal once (a crashed node's peers disappear this way)."""
        if not self._fanout.connected:
            return
        collections = set(self.hub.collections())
        collections.update(collection_id for collection_id, _ in self._local_presence)
        if not collections:
            return
        try:
            expired = await self._store.presence_expired(sorted(collections))
            for collection_id, peer_ids in expired.items():
                leaves = [
                    (peer_id, leave_event(collection_id, peer_id, "expired"))
                    for peer_id in peer_ids
                ]
                self.expired_peers += await self._store.presence_sweep(collection_id, leaves)
        except BrokerError as exc:
            log.warning("presence expiry failed: %s", exc)
