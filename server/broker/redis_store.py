"""Commands of the Redis broker: scripts over a bounded connection pool.

Every call is bounded in time and fails with `BrokerError` (never hangs, never
retries on its own: a publish retried after a lost reply could be applied twice;
the client retries with its client message id instead).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT

from syncwire.v1 import sync_pb2, types_pb2

from . import redis_scripts as lua
from .base import (
    BrokerError,
    HistorySlice,
    PublishResult,
    SnapshotOutcome,
    StoredSnapshot,
    classify_recovery,
)
from .memory import new_epoch
from .redis_codec import delta_payload, history_event, presence_message
from .redis_connect import RedisTarget
from .redis_keys import KeySpace

EXPIRED_BATCH = 1000
"""Expired presence entries handled per collection and maintenance round."""


def no_retry() -> Retry:
    """redis-py retries nothing: reconnection is the broker's job, with backoff."""
    return Retry(NoBackoff(), 0, supported_errors=())


def connection_options(op_timeout: float) -> dict[str, Any]:
    """Pool options shared by the command pool and the pub/sub connection."""
    return {
        "socket_connect_timeout": op_timeout,
        "socket_timeout": op_timeout,
        "socket_keepalive": True,
        "retry": no_retry(),
        "health_check_interval": 0,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisStore:
    """Offsets, history, idempotency and presence state of every collection in Redis."""

    def __init__(
        self,
        target: RedisTarget,
        keys: KeySpace,
        *,
        history_size: int,
        history_ttl: float,
        dedupe_ttl: float,
        presence_ttl: float,
        meta_ttl: float,
        op_timeout: float,
        max_connections: int,
        durable: bool = False,
    ) -> None:
        self.keys = keys
        self.durable = durable
        self.durability_verified = False
        self.durability_problem = ""
        self.setup_problem = ""
        self._history_size = history_size
        self._history_ttl_ms = _ms(history_ttl)
        self._dedupe_ttl_ms = _ms(dedupe_ttl)
        self.presence_ttl_ms = _ms(presence_ttl)
        self._meta_ttl_ms = _ms(max(meta_ttl, history_ttl))
        self._op_timeout = op_timeout
        self._pool: ConnectionPool | None = None
        self._client: Redis | RedisCluster
        self.sharded = target.mode == "cluster"
        if self.sharded:
            self._client = target.cluster_client(
                max_connections=max_connections, **connection_options(op_timeout)
            )
        else:
            self._pool = target.pool(
                max_connections=max_connections,
                blocking=True,
                timeout=op_timeout,
                **connection_options(op_timeout),
            )
            self._client = Redis(connection_pool=self._pool)

        def register(script: str) -> AsyncScript:
            return self._client.register_script(lua.sharded(script) if self.sharded else script)

        self._publish = register(lua.PUBLISH)
        self._history = register(lua.HISTORY)
        self._rotate_epoch = register(lua.ROTATE_EPOCH)
        self._put_snapshot = register(lua.PUT_SNAPSHOT)
        self._presence_set = register(lua.PRESENCE_SET)
        self._presence_leave = register(lua.PRESENCE_LEAVE)
        self._presence_refresh = register(lua.PRESENCE_REFRESH)
        self._presence_members = register(lua.PRESENCE_MEMBERS)
        self._presence_expired = register(lua.PRESENCE_EXPIRED)
        self._presence_sweep = register(lua.PRESENCE_SWEEP)

    async def close(self) -> None:
        """Closes the client and its connection pool."""
        await self._client.aclose()
        if self._pool is not None:
            await self._pool.disconnect()

    @property
    def _check_instance(self) -> int:
        """1 while a change of Redis process must start new epochs (see `ensure_meta`):
        always, unless the operator declared a durable Redis and it was verified."""
        return 0 if self.durability_verified else 1

    async def verify_setup(self) -> str:
        """What is wrong with this Redis for the broker URL ("" when nothing), checked on
        every connect: a Redis Cluster node named by a redis:// or redis+sentinel://
        URL (its other slots would answer MOVED), or a durability declaration Redis does
        not meet (`verify_durability`). Raises BrokerError when Redis cannot be asked."""
        if not self.sharded:
            try:
                info = await self._call("setup check", self._client.info("cluster"))
            except BrokerError as exc:
                if not isinstance(exc.__cause__, ResponseError):
                    raise  # Redis is away: checked again on the next connect
                info = {}  # INFO is refused (renamed, ACL): nothing to learn
            if str(info.get("cluster_enabled", 0)) == "1":
                self.setup_problem = (
                    "the broker URL names one Redis, but it is a Redis Cluster node "
                    "(cluster_enabled:1): use redis+cluster://HOST:PORT[,HOST:PORT...]"
                )
                return self.setup_problem
        return await self.verify_durability()

    async def verify_durability(self) -> str:
        """When durability was declared, checks that Redis logs every write before
        acknowledging it (`appendonly yes`, `appendfsync always`); returns what is wrong
        ("" when durable or not declared). Raises BrokerError when Redis cannot be asked."""
        if not self.durable:
            return ""
        try:
            settings = await self._call(
                "durability check", self._client.config_get("appendonly", "appendfsync")
            )
        except BrokerError as exc:
            if not isinstance(exc.__cause__, ResponseError):
                raise  # Redis is away: checked again on the next connect
            self.durability_verified = False  # CONFIG is refused (renamed, ACL)
            self.durability_problem = (
                "the Redis broker was declared durable, but its persistence settings "
                f"cannot be checked ({exc.__cause__}); every Redis restart therefore "
                "starts new epochs"
            )
            return self.durability_problem
        values = {_text(key): _text(value) for key, value in settings.items()}
        found = (values.get("appendonly", "?"), values.get("appendfsync", "?"))
        self.durability_verified = found == ("yes", "always")
        self.durability_problem = "" if self.durability_verified else (
            "the Redis broker was declared durable, but Redis runs with appendonly "
            f"{found[0]}, appendfsync {found[1]} (durable needs appendonly yes, appendfsync "
            "always); every Redis restart therefore starts new epochs"
        )
        return self.durability_problem

    async def drop_idle_connections(self) -> None:
        """Forgets pooled connections after an outage, so no command tries a dead one."""
        if self._pool is not None:  # a cluster client replaces failed nodes' connections
            await self._pool.disconnect(inuse_connections=False)

    async def _call(self, what: str, operation: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self._op_timeout):
                return await operation
        except (RedisError, OSError, TimeoutError) as exc:
            raise BrokerError(f"redis {what} failed: {exc or type(exc).__name__}") from exc

    async def _batch(
        self, what: str, calls: Iterable[tuple[Any, list[Any], list[Any]]]
    ) -> list[Any]:
        """Runs (script, keys, args) calls in one round trip (no transaction); on a
        cluster, concurrently (each call goes to its collection's shard)."""
        if isinstance(self._client, RedisCluster):
            client = self._client
            return list(
                await self._call(
                    what,
                    asyncio.gather(
                        *(script(keys=keys, args=args, client=client) for script, keys, args in calls)
                    ),
                )
            )
        async with self._client.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                await script(keys=keys, args=args, client=pipe)
            result: list[Any] = await self._call(what, pipe.execute())
        return result

    # ------------------------------------------------------------------ deltas

    async def publish(self, delta: types_pb2.Delta) -> PublishResult:
        """Runs the PUBLISH script for `delta` (offset, history append, client message id,
        channel publish); returns the PublishResult. Raises BrokerError (see `_call`).
        """
        collection_id = delta.collection_id
        keys = self.keys
        names = [keys.meta(collection_id), keys.history(collection_id)]
        if delta.client_message_id:
            names.append(keys.dedupe(collection_id, delta.client_message_id))
        args: list[EncodableT] = [
            new_epoch(),
            delta_payload(delta),
            self._history_size,
            self._history_ttl_ms,
            self._dedupe_ttl_ms,
            self._meta_ttl_ms,
            keys.channel(collection_id),
            self._check_instance,
        ]
        duplicate, offset, epoch = await self._call("publish", self._publish(names, args))
        return PublishResult(collection_id, int(offset), epoch.decode(), duplicate=bool(duplicate))

    async def history(
        self, collection_id: str, since_offset: int | None, epoch: str, limit: int
    ) -> HistorySlice:
        """Runs the HISTORY script: up to `limit` entries after `since_offset` with the
        collection's epoch, offset and oldest offset, classified by `classify_recovery`.
        Raises BrokerError.
        """
        start = "" if since_offset is None else str(since_offset + 1)
        names = [self.keys.meta(collection_id), self.keys.history(collection_id)]
        args: list[EncodableT] = [
            new_epoch(),
            epoch,
            start,
            max(limit, 0),
            self._history_ttl_ms,
            self._meta_ttl_ms,
            self._check_instance,
        ]
        raw_epoch, raw_offset, raw_oldest, entries = await self._call(
            "history", self._history(names, args)
        )
        current = raw_epoch.decode()
        offset, oldest = int(raw_offset), int(raw_oldest)
        recovery = classify_recovery(since_offset, epoch, current, offset, oldest)
        events = [history_event(entry_id, fields, current) for entry_id, fields in entries]
        return HistorySlice(collection_id, current, offset, oldest, recovery, events)

    async def put_snapshot(
        self, collection_id: str, epoch: str, offset: int, data: bytes
    ) -> tuple[SnapshotOutcome, str, int]:
        """Runs the PUT_SNAPSHOT script (see `Broker.put_snapshot`). Raises BrokerError."""
        names = [self.keys.meta(collection_id), self.keys.history(collection_id)]
        args: list[EncodableT] = [
            new_epoch(),
            epoch,
            offset,
            data,
            self._meta_ttl_ms,
            self._check_instance,
        ]
        outcome, current, at = await self._call("put snapshot", self._put_snapshot(names, args))
        return outcome.decode(), current.decode(), int(at)

    async def remove_history(self, collection_id: str) -> int:
        """Deletes the collection's history stream (meta stays). Raises BrokerError."""
        history = self.keys.history(collection_id)
        removed = await self._call("remove history", self._client.xlen(history))
        await self._call("remove history", self._client.delete(history))
        return int(removed)

    async def get_snapshot(self, collection_id: str) -> StoredSnapshot | None:
        """The snapshot fields of the collection's meta hash. Raises BrokerError."""
        epoch, offset, data, created = await self._call(
            "get snapshot",
            self._client.hmget(
                self.keys.meta(collection_id), ["snap_epoch", "snap_offset", "snap_data", "snap_at"]
            ),
        )
        if epoch is None or offset is None or data is None:
            return None
        return StoredSnapshot(
            collection_id, epoch.decode(), int(offset), bytes(data), int(created or 0)
        )

    async def rotate_epoch(self, collection_id: str, epoch: str, delivered: int) -> str:
        """Starts a new epoch if the collection is still in `epoch` but behind `delivered`
        (Redis restarted from an older snapshot); returns the epoch now current."""
        names = [self.keys.meta(collection_id), self.keys.history(collection_id)]
        current = await self._call(
            "rotate epoch", self._rotate_epoch(names, [epoch, delivered, new_epoch()])
        )
        return current.decode() if current else ""

    # ---------------------------------------------------------------- presence

    def _presence_keys(self, collection_id: str) -> list[str]:
        return [self.keys.presence(collection_id), self.keys.presence_deadlines(collection_id)]

    async def presence_set(
        self,
        entry: types_pb2.Presence,
        event: sync_pb2.SyncResponse,
        *,
        only_if_absent: bool = False,
    ) -> bool:
        """Stores `entry` with a fresh deadline and broadcasts `event` (join or update).
        With `only_if_absent` an entry someone else stored meanwhile wins (restores
        never overwrite a newer join or update). Returns whether it was stored."""
        collection_id = entry.collection_id
        args: list[EncodableT] = [
            entry.peer_id,
            entry.SerializeToString(),
            self.presence_ttl_ms,
            self.keys.channel(collection_id),
            presence_message(event),
            int(only_if_absent),
        ]
        stored = await self._call(
            "presence", self._presence_set(self._presence_keys(collection_id), args)
        )
        return bool(stored)

    async def presence_leave(
        self, collection_id: str, peer_id: str, event: sync_pb2.SyncResponse
    ) -> bool:
        """Removes the peer's entry and publishes `event`; returns whether an entry was
        removed. Raises BrokerError.
        """
        args: list[EncodableT] = [
            peer_id,
            self.keys.channel(collection_id),
            presence_message(event),
        ]
        removed = await self._call(
            "presence leave", self._presence_leave(self._presence_keys(collection_id), args)
        )
        return bool(removed)

    async def presence_members(self, collection_id: str) -> list[types_pb2.Presence]:
        """Every live presence entry of `collection_id`. Raises BrokerError."""
        values = await self._call(
            "presence members", self._presence_members(self._presence_keys(collection_id), [])
        )
        return [types_pb2.Presence.FromString(value) for value in values]

    async def presence_refresh(self, peers: Mapping[str, list[str]]) -> dict[str, list[str]]:
        """Extends the deadlines of `peers` (collection -> peer ids); returns the peers
        that have no entry any more (Redis lost it, or it expired) per collection."""
        collections = list(peers)
        results = await self._batch(
            "presence refresh",
            (
                (self._presence_refresh, self._presence_keys(c), [self.presence_ttl_ms, *peers[c]])
                for c in collections
            ),
        )
        return {
            c: [peer.decode() for peer in missing]
            for c, missing in zip(collections, results, strict=True)
            if missing
        }

    async def presence_expired(self, collection_ids: list[str]) -> dict[str, list[str]]:
        """Peers whose deadline has passed, per collection (at most EXPIRED_BATCH each)."""
        results = await self._batch(
            "presence expiry",
            (
                (self._presence_expired, [self.keys.presence_deadlines(c)], [EXPIRED_BATCH])
                for c in collection_ids
            ),
        )
        return {
            c: [peer.decode() for peer in expired]
            for c, expired in zip(collection_ids, results, strict=True)
            if expired
        }

    async def presence_sweep(
        self, collection_id: str, leaves: list[tuple[str, sync_pb2.SyncResponse]]
    ) -> int:
        """Removes the given peers if they are still expired, broadcasting each leave;
        returns how many this call removed."""
        args: list[EncodableT] = [self.keys.channel(collection_id)]
        for peer_id, event in leaves:
            args += [peer_id, presence_message(event)]
        removed = await self._call(
            "presence sweep", self._presence_sweep(self._presence_keys(collection_id), args)
        )
        return int(removed)
