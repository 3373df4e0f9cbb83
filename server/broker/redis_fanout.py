"""Node-side fan-out of the Redis broker: one pub/sub connection per node.

The node subscribes to the channel of every collection that has local sinks (first
local sink -> SUBSCRIBE, last one gone -> UNSUBSCRIBE), parses each event once and hands
it to the `LocalHub`. Per collection it tracks the epoch and the last offset it
dispatched, which makes delivery gap-free and duplicate-free across reconnects:

- a delta at or below the last offset is dropped; one beyond `last + 1` (a message
  lost on the wire) triggers a catch-up from history;
- after a lost connection the node reconnects with jittered, capped exponential
  backoff, re-subscribes and, per collection, reads history after its last offset:
  deltas published meanwhile are dispatched; if the epoch changed (Redis lost its data)
  the local sinks get an unsolicited `Subscribed(recovery=EPOCH_MISMATCH)`, and if
  history no longer reaches back far enough one with `GAP_TOO_OLD`.

Catch-up reads run inline in the reader right after a channel's subscription is
confirmed, so everything read from the connection afterwards is newer than what the
catch-up returned, and nothing is buffered in memory while Redis is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.backoff import AbstractBackoff
from redis.exceptions import RedisClusterException, RedisError

from syncwire.v1 import sync_pb2
from wire.tasks import cancel_and_wait

from .base import BrokerError
from .hub import LocalHub
from .redis_codec import decode_message
from .redis_connect import RedisTarget
from .redis_keys import KeySpace
from .redis_sharded import ShardedPubSub
from .redis_store import RedisStore, connection_options

log = logging.getLogger(__name__)

Subscriber = PubSub | ShardedPubSub
"""One pub/sub connection (single Redis, Sentinel) or sharded pub/sub (Redis Cluster)."""

SUBSCRIBE_BATCH = 512
STABLE_CONNECTION = 5.0
"""Seconds a connection must last before reconnect backoff starts over."""
RECOVERED = sync_pb2.RECOVERY_STATUS_RECOVERED
EPOCH_MISMATCH = sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH
GAP_TOO_OLD = sync_pb2.RECOVERY_STATUS_GAP_TOO_OLD
OFFSET_AHEAD = sync_pb2.RECOVERY_STATUS_OFFSET_AHEAD


@dataclass(eq=False, slots=True)
class _Tracked:
    """A collection with local sinks: what this node has dispatched of it."""

    collection_id: str
    channel: bytes
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    epoch: str = ""
    previous_epoch: str = ""
    last: int = 0


@dataclass(slots=True)
class FanoutStats:
    """Counters for logs, metrics and tests."""

    connects: int = 0
    disconnects: int = 0
    caught_up: int = 0
    """Deltas dispatched from history because the live channel missed them."""
    epoch_changes: int = 0
    gaps: int = 0
    malformed: int = 0
    connect_failures: int = 0
    """Attempts to (re)connect that failed before the connection came up."""


class RedisFanout:
    """Owns the node's pub/sub connection and dispatches what arrives on it."""

    def __init__(
        self,
        target: RedisTarget,
        keys: KeySpace,
        hub: LocalHub,
        store: RedisStore,
        *,
        op_timeout: float,
        ping_interval: float,
        backoff: AbstractBackoff,
    ) -> None:
        self._pool: ConnectionPool | None = None
        self._cluster: RedisCluster | None = None
        self._client: Redis | None = None
        if target.mode == "cluster":
            self._cluster = target.cluster_client(
                max_connections=4, **connection_options(op_timeout)
            )
        else:
            self._pool = target.pool(
                max_connections=2, blocking=False, **connection_options(op_timeout)
            )
            self._client = Redis(connection_pool=self._pool)
        self._keys = keys
        self._hub = hub
        self._store = store
        self._op_timeout = op_timeout
        self._ping_interval = ping_interval
        self._backoff = backoff
        self._tracked: dict[str, _Tracked] = {}
        self._by_channel: dict[bytes, _Tracked] = {}
        self._pending: dict[bytes, int] = {}
        self._pubsub: Subscriber | None = None
        self._connected_at = 0.0
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._down.set()
        self._task: asyncio.Task[None] | None = None
        # True while start() waits: a durability problem found then is raised by the
        # broker's start() (one line at exit), so it is not logged as well.
        self._starting = False
        # Unexpected failure kinds already logged with a traceback: repeats (a reconnect
        # loop, e.g. while a Redis Cluster is not formed yet) are one warning line each.
        self._failures_logged: set[type[BaseException]] = set()
        self.stats = FanoutStats()

    # --------------------------------------------------------------- lifecycle

    @property
    def connected(self) -> bool:
        """True while the pub/sub connection is up."""
        return self._pubsub is not None

    async def start(self, wait: float) -> None:
        """Starts the connection loop; waits up to `wait` seconds for the first connect."""
        self._task = asyncio.create_task(self._run(), name="syncwire-redis-fanout")
        self._starting = True
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._up.wait()
        finally:
            self._starting = False
        if not self.connected:
            log.warning("redis not reachable yet; retrying in the background")

    async def close(self) -> None:
        """Stops the reader task and closes the pub/sub connection and its pool."""
        if self._task is not None:
            await cancel_and_wait(self._task, log, "the redis fan-out")
            self._task = None
        if self._client is not None:
            await self._client.aclose()
        if self._cluster is not None:
            await self._cluster.aclose()
        if self._pool is not None:
            await self._pool.disconnect()

    def _open(self) -> Subscriber:
        """A new, not yet connected subscriber: sharded over every master of a
        cluster, else one pub/sub connection."""
        if self._cluster is not None:
            return ShardedPubSub(self._cluster)
        assert self._client is not None
        return self._client.pubsub()

    async def wait_state(self, connected: bool) -> None:
        """Waits until the node is connected (True) or disconnected (False)."""
        await (self._up if connected else self._down).wait()

    # ------------------------------------------------------------ collections

    async def track(self, collection_id: str) -> None:
        """Makes sure the collection's events reach the hub; returns once the channel
        is subscribed and its position known, so a history read that follows misses
        nothing. Raises BrokerError while Redis is away."""
        tracked = self._tracked.get(collection_id)
        if tracked is None:
            tracked = _Tracked(collection_id, self._keys.channel(collection_id))
            self._tracked[collection_id] = tracked
            self._by_channel[tracked.channel] = tracked
            if self._pubsub is not None:
                await self._subscribe(self._pubsub, [tracked.channel])
        if self._pubsub is None:
            raise BrokerError("redis unavailable (reconnecting)")
        try:
            async with asyncio.timeout(self._op_timeout):
                await tracked.ready.wait()
        except TimeoutError:
            raise BrokerError(f"redis subscription to {collection_id!r} timed out") from None

    async def untrack(self, collection_id: str) -> None:
        """Stops following `collection_id` on this node (unsubscribes its channel when
        connected; errors of an already broken connection are ignored).
        """
        tracked = self._tracked.pop(collection_id, None)
        if tracked is None:
            return
        del self._by_channel[tracked.channel]
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.unsubscribe(tracked.channel)

    async def _subscribe(self, pubsub: Subscriber, channels: list[bytes]) -> None:
        for channel in channels:
            self._pending[channel] = self._pending.get(channel, 0) + 1
        try:
            await pubsub.subscribe(*channels)
        except (RedisError, OSError) as exc:
            raise BrokerError(f"redis subscribe failed: {exc}") from exc

    # ------------------------------------------------------------- connection

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            pubsub = self._open()
            error: BaseException | None = None
            try:
                await self._serve(pubsub)
            except (RedisError, RedisClusterException, OSError, TimeoutError, BrokerError) as exc:
                error = exc
            except Exception as exc:  # a bug must not end fan-out for good: log, reconnect
                if type(exc) not in self._failures_logged:
                    self._failures_logged.add(type(exc))
                    log.exception("redis fan-out failed (repeats are logged without traceback)")
                error = exc
            finally:
                was_connected = self._pubsub is pubsub
                self._set_connected(None)
                try:
                    await _close(pubsub)
                except Exception:  # the connection is already broken: note it, go on
                    log.warning("closing the broken pub/sub connection failed", exc_info=True)
            if was_connected:
                if loop.time() - self._connected_at >= STABLE_CONNECTION:
                    failures = 0  # a flapping connection keeps backing off
                self.stats.disconnects += 1
                log.warning("redis connection lost (%s); reconnecting", _brief(error))
                try:
                    await self._store.drop_idle_connections()
                except Exception:
                    log.warning("dropping idle redis connections failed", exc_info=True)
            else:
                self.stats.connect_failures += 1
                if failures == 0:
                    log.warning(
                        "redis connection failed (%s); retrying with backoff", _brief(error)
                    )
            failures += 1
            await asyncio.sleep(self._backoff.compute(failures))

    def _set_connected(self, pubsub: Subscriber | None) -> None:
        self._pubsub = pubsub
        self._connected_at = asyncio.get_running_loop().time()
        self._pending.clear()
        (self._up if pubsub else self._down).set()
        (self._down if pubsub else self._up).clear()

    async def _serve(self, pubsub: Subscriber) -> None:
        """Connects, re-subscribes every tracked collection and reads until failure."""
        async with asyncio.timeout(self._op_timeout):
            await pubsub.ping()
            while (await pubsub.get_message(timeout=self._op_timeout)) is None:
                pass
        problem = await self._store.verify_setup()
        if problem and not self._starting:
            log.error("%s", problem)
        self._set_connected(pubsub)
        self.stats.connects += 1
        if self.stats.connects > 1:
            log.warning("redis connection restored")
        channels = [tracked.channel for tracked in self._tracked.values()]
        for start in range(0, len(channels), SUBSCRIBE_BATCH):
            await self._subscribe(pubsub, channels[start : start + SUBSCRIBE_BATCH])
        await self._read(pubsub)

    async def _read(self, pubsub: Subscriber) -> None:
        """Reads messages; pings when the line is quiet and gives up without a pong."""
        loop = asyncio.get_running_loop()
        pong_due: float | None = None
        while True:
            wait = self._ping_interval if pong_due is None else pong_due - loop.time()
            message = await pubsub.get_message(timeout=max(wait, 0.01))
            if message is not None:
                pong_due = None
                await self._handle(message)
            elif pong_due is None:
                await pubsub.ping()
                pong_due = loop.time() + self._op_timeout
            elif loop.time() >= pong_due:
                raise TimeoutError("redis did not answer a ping")

    # -------------------------------------------------------------- messages

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            await self._on_event(message["channel"], message["data"])
        elif kind == "subscribe":
            await self._on_subscribed(message["channel"])

    async def _on_subscribed(self, channel: bytes) -> None:
        remaining = self._pending.get(channel, 0) - 1
        if remaining > 0:
            self._pending[channel] = remaining
            return
        self._pending.pop(channel, None)
        tracked = self._by_channel.get(channel)
        if tracked is not None:
            await self._sync(tracked)

    async def _on_event(self, channel: bytes, data: bytes) -> None:
        tracked = self._by_channel.get(channel)
        if tracked is None:
            return
        try:
            decoded = decode_message(data)
        except ValueError as exc:
            self.stats.malformed += 1
            log.warning("dropped malformed event on %r: %s", channel, exc)
            return
        collection_id = tracked.collection_id
        if not decoded.offset:
            self._hub.dispatch(collection_id, decoded.event)
            return
        if not tracked.ready.is_set() or decoded.epoch == tracked.previous_epoch:
            return  # attaching sinks read history themselves / stale epoch
        if decoded.epoch != tracked.epoch:
            await self._epoch_changed(tracked)  # the replay includes this delta
            return
        if decoded.offset <= tracked.last:
            return
        elif decoded.offset > tracked.last + 1:
            await self._sync(tracked)  # the catch-up includes this delta
            return
        tracked.last = decoded.offset
        self._hub.dispatch(collection_id, decoded.event)

    # ---------------------------------------------------------------- catch-up

    async def _sync(self, tracked: _Tracked) -> None:
        """Learns the collection's position (first subscription) or catches up on what
        the live channel missed (after a reconnect or a gap)."""
        collection_id = tracked.collection_id
        since = tracked.last if tracked.ready.is_set() else None
        history = await self._store.history(collection_id, since, tracked.epoch, 0)
        if self._tracked.get(collection_id) is not tracked:
            return  # detached meanwhile
        if since is None:
            tracked.epoch, tracked.last = history.epoch, history.offset
            tracked.ready.set()
            return
        recovery = history.recovery
        if recovery == EPOCH_MISMATCH:
            await self._epoch_changed(tracked)
        elif recovery == OFFSET_AHEAD:
            await self._store.rotate_epoch(collection_id, tracked.epoch, tracked.last)
            await self._epoch_changed(tracked)
        elif recovery == GAP_TOO_OLD:
            self.stats.gaps += 1
            tracked.last = history.offset
            self._notify(
                tracked, GAP_TOO_OLD, history.epoch, history.offset, history.oldest_offset
            )
        else:
            for event in history.events:
                if event.delta.offset > tracked.last:
                    tracked.last = event.delta.offset
                    self.stats.caught_up += 1
                    self._hub.dispatch(collection_id, event)
            tracked.last = max(tracked.last, history.offset)

    async def _epoch_changed(self, tracked: _Tracked) -> None:
        """The collection's history was lost (new epoch). Tells the local sinks with an
        unasked EPOCH_MISMATCH, then replays what the new epoch already holds (deltas
        accepted since the loss, e.g. by a promoted replica before this node followed
        it), as a resubscribe would: `replayed` deltas from `oldest_offset` follow."""
        collection_id = tracked.collection_id
        history = await self._store.history(collection_id, 0, "", 0)
        if self._tracked.get(collection_id) is not tracked:
            return  # detached meanwhile
        log.info(
            "history of %r lost: epoch %s -> %s", collection_id, tracked.epoch, history.epoch
        )
        self.stats.epoch_changes += 1
        tracked.previous_epoch, tracked.epoch = tracked.epoch, history.epoch
        events = history.events
        self._notify(
            tracked, EPOCH_MISMATCH, history.epoch, history.offset, history.oldest_offset,
            replayed=len(events),
        )
        for event in events:
            self._hub.dispatch(collection_id, event)
        tracked.last = history.offset

    def _notify(
        self,
        tracked: _Tracked,
        recovery: int,
        epoch: str,
        offset: int,
        oldest: int,
        *,
        replayed: int = 0,
    ) -> None:
        """Tells the local sinks, unasked (request_id 0), where the collection stands."""
        notice = sync_pb2.SyncResponse(
            subscribed=sync_pb2.Subscribed(
                collection_id=tracked.collection_id,
                epoch=epoch,
                offset=offset,
                recovery=recovery,  # type: ignore[arg-type]
                oldest_offset=oldest,
                replayed=replayed,
            )
        )
        self._hub.dispatch(tracked.collection_id, notice)


async def _close(pubsub: Subscriber) -> None:
    if isinstance(pubsub, ShardedPubSub):
        await pubsub.aclose()
    else:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped upstream


def _brief(error: BaseException | None) -> str:
    """`error` as one short line: redis-py's MasterNotFoundError appends the whole
    repr of its sentinel connection pool ("No master found for 'm' : <redis...>")."""
    return re.sub(r" : <redis\..*", "", " ".join(str(error).split()))
