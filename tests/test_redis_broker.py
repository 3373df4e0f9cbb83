"""RedisBroker beyond the common contract: several nodes in one process, presence
expiry, outages and lost data, all against a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from server.broker import BrokerError, PublishResult
from server.broker.redis import RedisBroker
from server.broker.redis_codec import decode_message
from server.broker.redis_connect import RedisTarget
from server.broker.redis_keys import KeySpace
from server.config import ConfigError, ServerConfig
from syncwire.v1 import sync_pb2, types_pb2

from .broker_testing import Collector, delta, eventually
from .redis_harness import (  # noqa: F401
    RedisServer,
    free_port,
    private_redis,
    redis_base_url,
    redis_server,
    redis_url,
)

pytestmark = pytest.mark.timeout(30)

EPOCH_MISMATCH = sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH
MakeNode = Callable[..., Awaitable[RedisBroker]]


def node_factory(url: str) -> tuple[MakeNode, list[RedisBroker]]:
    made: list[RedisBroker] = []

    async def make(**options: Any) -> RedisBroker:
        node = RedisBroker(url, **options)
        await node.start()
        made.append(node)
        return node

    return make, made


@pytest.fixture
async def make_node(redis_url: str) -> AsyncIterator[MakeNode]:  # noqa: F811
    """Nodes (brokers) sharing the shared test Redis, as separate processes would."""
    make, made = node_factory(redis_url)
    yield make
    for node in made:
        await node.close()


@pytest.fixture
async def make_private_node(redis_server: RedisServer) -> AsyncIterator[MakeNode]:  # noqa: F811
    """Nodes on a private Redis the test may kill, restart or tamper with."""
    make, made = node_factory(redis_server.url())
    yield make
    for node in made:
        await node.close()


@pytest.fixture
async def raw_redis(redis_server: RedisServer) -> AsyncIterator[Redis]:  # noqa: F811
    client = Redis.from_url(redis_server.url())
    yield client
    await client.aclose()


@pytest.fixture
async def watched(make_private_node: MakeNode) -> tuple[RedisBroker, Collector]:
    """A node on the private Redis with a sink attached to "doc"."""
    node = await make_private_node()
    sink = Collector()
    await node.attach("doc", sink)
    return node, sink


def notices(sink: Collector) -> list[sync_pb2.Subscribed]:
    return [event.subscribed for event in sink.of_kind("subscribed")]


# ------------------------------------------------------------------ many nodes


async def test_nodes_deliver_every_delta_in_the_same_order(make_node: MakeNode) -> None:
    nodes = [await make_node() for _ in range(3)]
    sinks = [Collector() for _ in nodes]
    for node, sink in zip(nodes, sinks, strict=True):
        await node.attach("doc", sink)
    results = await asyncio.gather(
        *(nodes[i % 3].publish(delta("doc", f"{i}".encode())) for i in range(60))
    )
    assert sorted(r.offset for r in results) == list(range(1, 61))
    expected = [d for _, d in sorted((r.offset, f"{i}".encode()) for i, r in enumerate(results))]
    for sink in sinks:
        received = await sink.wait_deltas(60)
        assert [d.offset for d in received] == list(range(1, 61))
        assert [d.delta for d in received] == expected


async def test_dedupe_and_presence_are_shared_by_nodes(make_node: MakeNode) -> None:
    alpha, beta = await make_node(), await make_node()
    first = await alpha.publish(delta("doc", client_message_id="m"))
    again = await beta.publish(delta("doc", client_message_id="m"))
    assert (again.offset, again.epoch, again.duplicate) == (first.offset, first.epoch, True)
    await alpha.presence_join("room", "peer-a", None)
    await beta.presence_join("room", "peer-b", types_pb2.UserInfo(user_id="u"))
    for node in (alpha, beta):
        assert {m.peer_id for m in await node.presence_members("room")} == {"peer-a", "peer-b"}


async def test_expired_presence_is_announced_once(make_node: MakeNode) -> None:
    crashed = await make_node(presence_ttl=0.3)  # its peers expire soon: it never refreshes
    survivors = [await make_node(presence_ttl=600.0) for _ in range(2)]
    sinks = [Collector() for _ in survivors]
    for node, sink in zip(survivors, sinks, strict=True):
        await node.attach("room", sink)
    await crashed.presence_join("room", "ghost", None)
    await survivors[0].presence_join("room", "alive", None)
    await sinks[0].wait_until(lambda c: len(c.of_kind("peer_join")) == 2)

    async def sweep() -> int:  # every survivor sweeps, as each one's upkeep would
        await asyncio.gather(*(node.maintenance() for node in survivors))
        return sum(node.expired_peers for node in survivors)

    await eventually(sweep, lambda swept: swept > 0)  # by Redis' clock
    await sweep()
    for sink in sinks:
        await sink.wait_until(lambda c: len(c.of_kind("peer_leave")) == 1)
        await publish_marker(survivors[0], sink)
        (leave,) = [event.peer_leave for event in sink.of_kind("peer_leave")]
        assert (leave.peer_id, leave.reason) == ("ghost", "expired")
    assert sum(node.expired_peers for node in survivors) == 1
    assert [m.peer_id for m in await crashed.presence_members("room")] == ["alive"]


async def test_members_hide_expired_entries_before_anyone_sweeps(make_node: MakeNode) -> None:
    node = await make_node(presence_ttl=1.0)
    await node.presence_join("room", "peer", None)
    await node.presence_join("room", "kept", None)
    assert {m.peer_id for m in await node.presence_members("room")} == {"peer", "kept"}

    async def members_after_refresh() -> list[str]:
        await node.presence_refresh([("room", "kept")])  # "peer" is no longer held
        return [m.peer_id for m in await node.presence_members("room")]

    assert await eventually(members_after_refresh, lambda ids: "peer" not in ids) == ["kept"]
    assert node.expired_peers == 0  # hidden by time alone, before any sweep


async def test_refresh_restores_presence_redis_lost(
    make_private_node: MakeNode, raw_redis: Redis
) -> None:
    holder, watcher = await make_private_node(), await make_private_node()
    sink = Collector()
    await watcher.attach("room", sink)
    user = types_pb2.UserInfo(user_id="u1")
    await holder.presence_join("room", "peer", user)
    await raw_redis.delete(holder.keys.presence("room"), holder.keys.presence_deadlines("room"))
    assert await watcher.presence_members("room") == []
    await holder.presence_refresh([("room", "peer"), ("room", "joined-while-away")])
    members = {m.peer_id: m for m in await watcher.presence_members("room")}
    assert set(members) == {"peer", "joined-while-away"}
    assert members["peer"].user_info == user
    await sink.wait_until(lambda c: len(c.of_kind("peer_join")) == 3)
    await holder.presence_refresh([])  # the sessions are gone: nothing is restored again
    await holder.presence_leave("room", "peer", "closed")
    assert [m.peer_id for m in await watcher.presence_members("room")] == ["joined-while-away"]


async def publish_marker(node: RedisBroker, sink: Collector, collection_id: str = "room") -> None:
    result = await node.publish(delta(collection_id, b"marker"))
    await sink.wait_until(lambda c: result.offset in c.offsets)


# -------------------------------------------------------------------- failures


async def test_outage_fails_fast_then_reports_the_new_epoch(
    make_private_node: MakeNode,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # An operation timeout far beyond the test's own bounds: a call that waited for
    # Redis instead of failing at once would time the test out.
    node = await make_private_node(op_timeout=60.0, reconnect_cap=0.5)
    sink = Collector()
    await node.attach("doc", sink)
    before = await node.publish(delta("doc"))
    await sink.wait_deltas(1)

    redis_server.kill()
    await node.wait_connected(False)
    assert not node.healthy
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: node.publish(delta("doc")),
        lambda: node.history("doc", 0, "", 10),
        lambda: node.presence_join("doc", "peer", None),
        lambda: node.presence_members("doc"),
        lambda: node.attach("new", Collector()),
    ]
    for call in calls:
        async with asyncio.timeout(10):
            with pytest.raises(BrokerError):
                await call()
    assert node.hub.collections() == ["doc"]  # nothing piles up while Redis is away
    await node.presence_refresh([("doc", "peer")])  # upkeep stays quiet
    await node.maintenance()

    redis_server.start()
    await node.wait_connected(True)
    await sink.wait_until(lambda c: len(notices(c)) == 1)
    (notice,) = notices(sink)
    assert notice.recovery == EPOCH_MISMATCH
    assert (notice.collection_id, notice.offset) == ("doc", 0)
    assert notice.epoch != before.epoch
    assert sink.events[-1].request_id == 0
    after = await node.publish(delta("doc"))
    assert (after.offset, after.epoch) == (1, notice.epoch)
    received = await sink.wait_deltas(2)
    assert [(d.offset, d.epoch) for d in received] == [(1, before.epoch), (1, notice.epoch)]
    assert node.stats.disconnects == 1 and node.stats.epoch_changes == 1


async def test_deltas_published_while_a_node_reconnects_are_caught_up(
    make_private_node: MakeNode, raw_redis: Redis
) -> None:
    listener = await make_private_node(reconnect_base=0.4)
    publisher = await make_private_node()  # subscribes nothing: CLIENT KILL spares it
    sink = Collector()
    await listener.attach("doc", sink)
    await publisher.publish(delta("doc", b"0"))
    await sink.wait_deltas(1)
    await raw_redis.client_kill_filter(_type="pubsub")
    await listener.wait_connected(False)
    for i in range(1, 6):
        await publisher.publish(delta("doc", f"{i}".encode()))
    await listener.wait_connected(True)
    for i in range(6, 9):
        await publisher.publish(delta("doc", f"{i}".encode()))
    received = await sink.wait_deltas(9)
    await publish_marker(publisher, sink, "doc")
    assert sink.offsets == list(range(1, 11))
    assert [d.delta for d in received[:9]] == [f"{i}".encode() for i in range(9)]
    assert listener.stats.caught_up >= 5
    assert notices(sink) == []


async def test_offsets_going_backwards_start_a_new_epoch(
    watched: tuple[RedisBroker, Collector], raw_redis: Redis
) -> None:
    node, sink = watched
    for _ in range(5):
        first = await node.publish(delta("doc"))
    await sink.wait_deltas(5)
    # Redis restored from an older snapshot: it has forgotten offsets 3..5.
    await raw_redis.hset(node.keys.meta("doc"), "top", 2)
    await raw_redis.client_kill_filter(_type="pubsub")
    await sink.wait_until(lambda c: len(notices(c)) == 1)
    (notice,) = notices(sink)
    assert notice.recovery == EPOCH_MISMATCH and notice.epoch != first.epoch
    history = await node.history("doc", 5, first.epoch, 10)
    assert (history.recovery, history.epoch) == (EPOCH_MISMATCH, notice.epoch)


async def test_history_ages_out_by_redis_time(make_node: MakeNode) -> None:
    node = await make_node(history_ttl=0.3)
    await node.publish(delta("doc", b"old-1"))
    await node.publish(delta("doc", b"old-2"))
    await eventually(lambda: node.history("doc", 0, "", 100), lambda h: not h.events)
    await node.publish(delta("doc", b"new"))
    result = await node.history("doc", 0, "", 100)
    # On a very slow machine "new" may have aged out too; the bounds agree either way.
    assert [e.delta.delta for e in result.events] in ([b"new"], [])
    assert result.oldest_offset == (3 if result.events else 0)
    assert (result.offset, result.recovery) == (3, sync_pb2.RECOVERY_STATUS_GAP_TOO_OLD)


async def test_client_message_ids_expire_by_redis_time(make_node: MakeNode) -> None:
    node = await make_node(dedupe_ttl=0.3)
    first = await node.publish(delta("doc", client_message_id="m-1"))
    later = await eventually(
        lambda: node.publish(delta("doc", client_message_id="m-1")), lambda r: not r.duplicate
    )
    assert (first.offset, later.offset) == (1, 2)


async def restart(node: RedisBroker, redis_server: RedisServer) -> None:  # noqa: F811
    """Kills Redis and starts it again (from whatever it persisted); waits for the node."""
    redis_server.kill()
    await node.wait_connected(False)
    redis_server.start()
    await node.wait_connected(True)


async def restart_from_a_snapshot_of_three(
    node: RedisBroker,
    redis_server: RedisServer,  # noqa: F811
    raw_redis: Redis,
) -> PublishResult:
    """Publishes 1-3 into "doc", snapshots (SAVE), publishes 4-6, restarts Redis from the
    snapshot; returns the result of offset 6 (which Redis has now forgotten)."""
    for _ in range(3):
        await node.publish(delta("doc"))
    await raw_redis.save()
    for _ in range(3):
        sixth = await node.publish(delta("doc"))
    assert sixth.offset == 6
    await restart(node, redis_server)
    return sixth


async def test_restart_from_an_older_snapshot_starts_a_new_epoch_unwatched(
    make_private_node: MakeNode,
    redis_server: RedisServer,  # noqa: F811
    raw_redis: Redis,
) -> None:
    # Issue 13, item 2: nobody subscribed, so no node can notice offsets going back.
    node = await make_private_node(reconnect_base=0.05, reconnect_cap=0.2)
    sixth = await restart_from_a_snapshot_of_three(node, redis_server, raw_redis)
    after = [await node.publish(delta("doc")) for _ in range(3)]
    assert {result.epoch for result in after} != {sixth.epoch}
    assert len({result.epoch for result in after}) == 1
    resumed = await node.history("doc", 6, sixth.epoch, 10)
    assert resumed.recovery == EPOCH_MISMATCH and resumed.epoch == after[0].epoch


async def test_resuming_after_a_snapshot_restart_is_never_told_recovered(
    make_private_node: MakeNode,
    redis_server: RedisServer,  # noqa: F811
    raw_redis: Redis,
) -> None:
    node = await make_private_node(reconnect_base=0.05, reconnect_cap=0.2)
    sixth = await restart_from_a_snapshot_of_three(node, redis_server, raw_redis)
    resumed = await node.history("doc", 3, sixth.epoch, 10)  # offsets 4..6 are gone
    assert resumed.recovery == EPOCH_MISMATCH and resumed.epoch != sixth.epoch


async def test_failover_to_a_replica_starts_a_new_epoch(
    make_private_node: MakeNode,
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    # A promoted replica may lag behind what its primary acknowledged.
    (tmp_path / "replica").mkdir()
    with private_redis(tmp_path / "replica") as replica:
        replica_client = Redis.from_url(replica.url())
        try:
            await replica_client.replicaof("127.0.0.1", redis_server.port)
            primary = await make_private_node()
            last = [await primary.publish(delta("doc")) for _ in range(3)][-1]
            await eventually(
                lambda: replica_client.hget(primary.keys.meta("doc"), "top"),
                lambda top: top == b"3",
            )
            await replica_client.replicaof("NO", "ONE")  # the failover
            promoted = RedisBroker(replica.url(), key_prefix=primary.keys.prefix)
            await promoted.start()
            try:
                after = await promoted.publish(delta("doc"))
                assert after.epoch != last.epoch
                resumed = await promoted.history("doc", 3, last.epoch, 10)
                assert resumed.recovery == EPOCH_MISMATCH
            finally:
                await promoted.close()
        finally:
            await replica_client.aclose()


async def test_flushall_starts_a_new_epoch(
    make_private_node: MakeNode, raw_redis: Redis
) -> None:
    node = await make_private_node()
    first = await node.publish(delta("doc"))
    await raw_redis.flushall()
    again = await node.publish(delta("doc"))
    assert again.epoch != first.epoch
    assert (await node.history("doc", 1, first.epoch, 10)).recovery == EPOCH_MISMATCH


async def test_a_declared_durable_redis_keeps_epochs_across_a_restart(
    make_private_node: MakeNode,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    redis_server.kill()
    redis_server.options = ["--appendonly", "yes", "--appendfsync", "always"]
    redis_server.start()
    node = await make_private_node(durable=True, reconnect_base=0.05, reconnect_cap=0.2)
    before = [await node.publish(delta("doc")) for _ in range(3)]
    await restart(node, redis_server)  # SIGKILL: only what AOF fsynced survives
    after = await node.publish(delta("doc"))
    assert (after.offset, after.epoch) == (4, before[-1].epoch)
    resumed = await node.history("doc", 3, before[-1].epoch, 10)
    assert resumed.recovery == sync_pb2.RECOVERY_STATUS_RECOVERED
    assert [event.delta.offset for event in resumed.events] == [4]


async def test_durable_declaration_is_checked_at_start(
    redis_server: RedisServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = RedisBroker(redis_server.url(), durable=True)
    with pytest.raises(BrokerError, match="appendfsync"):
        await node.start()
    assert not node.healthy
    # The error stops the server as one line; it is not logged a second time.
    assert not [r for r in caplog.records if "declared durable" in r.getMessage()]


async def test_durability_that_cannot_be_checked_is_refused(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    redis_server.kill()
    redis_server.options = ["--rename-command", "CONFIG", ""]  # as managed Redis does
    redis_server.start()
    node = RedisBroker(redis_server.url(), durable=True)
    with pytest.raises(BrokerError, match="cannot be checked"):
        await node.start()


async def test_a_cluster_node_named_by_a_redis_url_is_refused_at_start(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """redis:// naming a Redis Cluster node would serve the slots that node owns and
    answer UNAVAILABLE (MOVED) for every other collection, forever: refused at start."""
    redis_server.kill()
    redis_server.options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    redis_server.options += ["--cluster-port", str(free_port())]  # port + 10000 may not exist
    redis_server.start()
    node = RedisBroker(redis_server.url())
    with pytest.raises(BrokerError, match=r"a Redis Cluster node .*: use redis\+cluster://"):
        await node.start()
    assert not node.healthy


async def test_without_the_declaration_an_aof_restart_still_starts_a_new_epoch(
    make_private_node: MakeNode,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    redis_server.kill()
    redis_server.options = ["--appendonly", "yes", "--appendfsync", "everysec"]
    redis_server.start()
    node = await make_private_node(reconnect_base=0.05, reconnect_cap=0.2)
    before = await node.publish(delta("doc"))
    await restart(node, redis_server)  # everysec may have lost the last second
    after = await node.publish(delta("doc"))
    assert after.epoch != before.epoch


async def test_live_epoch_change_is_announced_before_the_delta(
    watched: tuple[RedisBroker, Collector], raw_redis: Redis
) -> None:
    node, sink = watched
    old = await node.publish(delta("doc"))
    await raw_redis.delete(node.keys.meta("doc"), node.keys.history("doc"))  # evicted
    new = await node.publish(delta("doc"))
    await sink.wait_deltas(2)
    kinds = [(e.WhichOneof("kind"), e.delta.offset) for e in sink.events]
    assert kinds == [("delta", 1), ("subscribed", 0), ("delta", 1)]
    assert new.epoch != old.epoch and notices(sink)[0].epoch == new.epoch


async def test_malformed_channel_messages_are_dropped(
    watched: tuple[RedisBroker, Collector], raw_redis: Redis
) -> None:
    node, sink = watched
    for garbage in (b"", b"X", b"D1\nepoch", b"Pnot-protobuf\xff\xff"):
        await raw_redis.publish(node.keys.channel("doc"), garbage)
    await publish_marker(node, sink, "doc")
    assert node.stats.malformed == 4
    assert [e.WhichOneof("kind") for e in sink.events] == ["delta"]


async def test_start_without_redis_connects_later(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    redis_server.kill()
    node = RedisBroker(redis_server.url(), op_timeout=0.3, reconnect_cap=0.3)
    try:
        await node.start()  # returns after op_timeout without a connection
        assert not node.healthy
        redis_server.start()
        await node.wait_connected(True)
        assert (await node.publish(delta("doc"))).offset == 1
    finally:
        await node.close()


# ------------------------------------------------------------------- plumbing


def test_sentinel_and_cluster_urls_name_their_nodes() -> None:
    sentinel = RedisTarget.parse(
        "redis+sentinel://:pw@127.0.0.1:26379,[::1]:26380/main/2?key_prefix=app&sentinel_password=s"
    )
    assert (sentinel.mode, sentinel.master, sentinel.db, sentinel.key_prefix) == (
        "sentinel", "main", 2, "app"
    )
    assert sentinel.addresses == (("127.0.0.1", 26379), ("::1", 26380))
    assert (sentinel.password, sentinel.sentinel_password) == ("pw", "s")
    cluster = RedisTarget.parse("rediss+cluster://a:7000,b:7001")
    assert (cluster.mode, cluster.tls, cluster.addresses) == ("cluster", True, (("a", 7000), ("b", 7001)))
    for bad, why in [
        ("redis+sentinel://h:1", "names the master"),
        ("redis+sentinel://h:1/m/x", "not a number"),
        ("redis+cluster://h:1/0", "no path"),
        ("redis+cluster://h", "HOST:PORT"),
        ("http://h:1", "unknown scheme"),
    ]:
        with pytest.raises(ValueError, match=why):
            RedisTarget.parse(bad)
    with pytest.raises(ConfigError, match="invalid broker: a sentinel URL"):
        ServerConfig(broker="redis+sentinel://h:1")


def test_key_prefix_comes_from_the_url() -> None:
    target = RedisTarget.parse("redis://h:1/2?key_prefix=app&db=3")
    assert (target.url, target.key_prefix) == ("redis://h:1/2?db=3", "app")
    assert RedisTarget.parse("redis://h:1/0").key_prefix == "syncwire"
    assert RedisBroker("redis://h:1/0?key_prefix=app").keys.prefix == "app"
    assert RedisBroker("redis://h:1/0").keys.prefix == "syncwire"


def test_every_key_of_a_collection_shares_one_slot_whatever_its_id() -> None:
    keys = KeySpace("p")
    for collection_id in ("doc", "a}b", "}x", "{", "{}", "x{y}z", "é"):
        names = [keys.meta(collection_id), keys.history(collection_id)]
        names += [keys.dedupe(collection_id, "x}:meta"), keys.presence(collection_id)]
        names += [keys.presence_deadlines(collection_id), keys.channel(collection_id).decode()]
        tag = "{" + KeySpace.tag(collection_id) + "}"
        assert all(name.startswith(f"p:{tag}:") for name in names)
        assert len({key_slot(name.encode()) for name in names}) == 1, collection_id
        assert len(set(names)) == len(names)
    assert keys.meta("}x") != keys.meta("}y")  # a raw id would give both the empty tag
    assert keys.dedupe("a", "x}:meta") != keys.meta("a}:dedupe:x")
    assert "}" not in keys.dedupe("c", "}}}").removeprefix(f"p:{{{KeySpace.tag('c')}}}:")
    with pytest.raises(ValueError, match="may not contain"):
        KeySpace("p{x}")
    with pytest.raises(ValueError, match="may not contain"):
        RedisTarget.parse("redis://h:1/0?key_prefix=a}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h:1/0?key_prefx=a", "unknown URL parameter 'key_prefx'"),
        ("redis+sentinel://h:1/m/0?key_prefx=a", "unknown URL parameter 'key_prefx'"),
        ("redis+cluster://h:1?sentinel_password=x", "unknown URL parameter 'sentinel_password'"),
        ("redis://h:1/0/1", "database '0/1' is not a number"),
        ("redis://h:1/x", "database 'x' is not a number"),
    ],
)
def test_a_misspelt_url_parameter_is_refused(url: str, message: str) -> None:
    """A misspelt parameter was ignored (sentinel, cluster: the default prefix, sharing
    keys with another deployment) or made every connect fail forever (redis://)."""
    with pytest.raises(ValueError, match=re.escape(message)):
        RedisTarget.parse(url)
    assert RedisTarget.parse("rediss://h:1/0?ssl_cert_reqs=none&protocol=3").mode == "single"


def test_channel_messages_decode_or_fail_cleanly() -> None:
    body = sync_pb2.SyncResponse(delta=types_pb2.Delta(collection_id="c")).SerializeToString()
    decoded = decode_message(b"D7\nep\n" + body)
    assert (decoded.offset, decoded.epoch, decoded.event.delta.offset) == (7, "ep", 7)
    presence = sync_pb2.SyncResponse(peer_join=types_pb2.PeerJoin(peer_id="p"))
    assert decode_message(b"P" + presence.SerializeToString()).event == presence
    for bad in (b"", b"Q", b"D7", b"Dx\ne\n", b"D1\ne\n" + presence.SerializeToString()):
        with pytest.raises(ValueError):
            decode_message(bad)


async def test_unreachable_sentinels_are_one_short_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """redis-py's "No master found" carries its whole connection pool's repr; the log
    line keeps only the sentence."""
    node = RedisBroker(f"redis+sentinel://127.0.0.1:{free_port()}/mymaster/0", op_timeout=0.2)
    try:
        await node.start()
        lines = [r.getMessage() for r in caplog.records if "connection failed" in r.getMessage()]
        assert lines and "No master found for 'mymaster'" in lines[0]
        assert "<redis" not in lines[0] and len(lines[0]) < 200, lines[0]
    finally:
        await node.close()


async def test_a_cluster_not_formed_yet_is_retried_without_a_traceback_per_attempt(
    redis_server: RedisServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """redis+cluster:// before `redis-cli --cluster create`: redis-py fails in ways that
    are not RedisError (RedisClusterException, IndexError); each retry used to log a
    multi-line ERROR traceback. At most one traceback, then quiet retries."""
    redis_server.kill()
    redis_server.options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    redis_server.options += ["--cluster-port", str(free_port())]
    redis_server.start()
    url = f"redis+cluster://127.0.0.1:{redis_server.port}"
    node = RedisBroker(url, op_timeout=0.5, reconnect_base=0.01, reconnect_cap=0.05)
    caplog.set_level(logging.WARNING, logger="server.broker")
    try:
        with contextlib.suppress(BrokerError):
            await node.start()
        async with asyncio.timeout(30):
            while node.stats.connect_failures < 5:  # noqa: ASYNC110 - a counter, no event
                await asyncio.sleep(0.01)
        assert not node.healthy
        tracebacks = [r for r in caplog.records if r.exc_info is not None]
        assert len(tracebacks) <= 1, [r.getMessage() for r in tracebacks]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) <= 1, [r.getMessage() for r in errors]
    finally:
        await node.close()
