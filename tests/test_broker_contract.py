"""The Broker contract, run against every broker: MemoryBroker and RedisBroker (real
redis-server). Whatever a session relies on must hold for both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from server.broker import Broker, MemoryBroker
from server.broker.base import classify_recovery
from server.broker.redis import RedisBroker
from syncwire.v1 import sync_pb2, types_pb2

from .broker_testing import Collector, ManualClock, delta
from .redis_harness import redis_base_url, redis_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(30)

RECOVERED = sync_pb2.RECOVERY_STATUS_RECOVERED
EPOCH_MISMATCH = sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH
GAP_TOO_OLD = sync_pb2.RECOVERY_STATUS_GAP_TOO_OLD
OFFSET_AHEAD = sync_pb2.RECOVERY_STATUS_OFFSET_AHEAD
UNSPECIFIED = sync_pb2.RECOVERY_STATUS_UNSPECIFIED

MakeBroker = Callable[..., Awaitable[Broker]]


@pytest.fixture(params=["memory", "redis"])
async def make_broker(request: pytest.FixtureRequest) -> AsyncIterator[MakeBroker]:
    """Builds started brokers of the parametrized kind; closes them afterwards."""
    url = str(request.getfixturevalue("redis_url")) if request.param == "redis" else ""
    made: list[Broker] = []

    async def make(**options: Any) -> Broker:
        broker: Broker = MemoryBroker(**options) if not url else RedisBroker(url, **options)
        await broker.start()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


@pytest.fixture
async def broker(make_broker: MakeBroker) -> Broker:
    return await make_broker()


async def publish_marker(broker: Broker, sink: Collector, collection_id: str) -> None:
    """Publishes a delta and waits for it: everything published before has arrived."""
    result = await broker.publish(delta(collection_id, b"marker"))
    await sink.wait_until(lambda c: result.offset in c.offsets)


# ---------------------------------------------------------------- offsets, order


async def test_offsets_count_from_one_within_one_epoch(broker: Broker) -> None:
    results = [await broker.publish(delta("doc", f"d{i}".encode())) for i in range(5)]
    assert [r.offset for r in results] == [1, 2, 3, 4, 5]
    assert len({r.epoch for r in results}) == 1
    assert results[0].epoch
    assert not any(r.duplicate for r in results)
    assert all(r.collection_id == "doc" for r in results)
    other = await broker.publish(delta("other"))
    assert other.offset == 1


async def test_history_of_a_new_collection_fixes_the_epoch(broker: Broker) -> None:
    first = await broker.history("fresh", None, "", 10)
    again = await broker.history("fresh", None, "", 10)
    published = await broker.publish(delta("fresh"))
    assert first.epoch == again.epoch == published.epoch
    assert (first.offset, first.oldest_offset, first.events) == (0, 0, [])
    assert first.recovery == UNSPECIFIED


async def test_publish_fills_server_fields_on_a_copy(broker: Broker) -> None:
    sink = Collector()
    await broker.attach("doc", sink)
    original = delta("doc", b"payload", peer_id="peer-1", replica_id="r1")
    result = await broker.publish(original)
    assert original.offset == 0 and not original.epoch  # the caller's message is untouched
    (received,) = await sink.wait_deltas(1)
    assert received.offset == result.offset == 1
    assert received.epoch == result.epoch
    assert received.server_time.seconds > 0
    assert (received.peer_id, received.replica_id, received.delta) == ("peer-1", "r1", b"payload")
    assert received.crdt_type == types_pb2.CRDT_TYPE_RGA


async def test_concurrent_publishes_reach_every_sink_in_offset_order(broker: Broker) -> None:
    sinks = [Collector(), Collector()]
    for sink in sinks:
        await broker.attach("doc", sink)
    results = await asyncio.gather(*(broker.publish(delta("doc", bytes([i]))) for i in range(40)))
    assert sorted(r.offset for r in results) == list(range(1, 41))
    by_offset = {r.offset: bytes([i]) for i, r in enumerate(results)}
    for sink in sinks:
        received = await sink.wait_deltas(40)
        assert [d.offset for d in received] == list(range(1, 41))
        assert [d.delta for d in received] == [by_offset[o] for o in range(1, 41)]


# -------------------------------------------------------------- attach / detach


async def test_attach_and_detach_control_fan_out(broker: Broker) -> None:
    first, second, elsewhere = Collector(), Collector(), Collector()
    await broker.attach("doc", first)
    await broker.attach("doc", second)
    await broker.attach("other", elsewhere)
    await broker.publish(delta("doc", b"one"))
    await first.wait_deltas(1)
    await second.wait_deltas(1)
    await broker.detach("doc", second)
    await broker.detach("doc", Collector())  # unknown sinks are ignored
    await broker.publish(delta("doc", b"two"))
    await first.wait_deltas(2)
    await publish_marker(broker, elsewhere, "other")
    assert second.offsets == [1]
    assert elsewhere.offsets == [1]  # only its own marker


async def test_a_failing_sink_does_not_starve_the_others(broker: Broker) -> None:
    def broken(event: sync_pb2.SyncResponse) -> None:
        raise RuntimeError("sink bug")

    healthy = Collector()
    await broker.attach("doc", broken)
    await broker.attach("doc", healthy)
    await broker.publish(delta("doc"))
    await healthy.wait_deltas(1)


async def test_reattach_after_last_detach_receives_again(broker: Broker) -> None:
    sink = Collector()
    await broker.attach("doc", sink)
    await broker.detach("doc", sink)
    await broker.publish(delta("doc", b"missed"))
    await broker.attach("doc", sink)
    await broker.publish(delta("doc", b"seen"))
    received = await sink.wait_deltas(1)
    assert [(d.offset, d.delta) for d in received] == [(2, b"seen")]


# --------------------------------------------------------------------- history


async def test_history_returns_deltas_after_an_offset(broker: Broker) -> None:
    for i in range(6):
        await broker.publish(delta("doc", f"d{i}".encode()))
    epoch = (await broker.history("doc", None, "", 0)).epoch
    result = await broker.history("doc", 2, epoch, 100)
    assert result.recovery == RECOVERED
    assert (result.offset, result.oldest_offset, result.epoch) == (6, 1, epoch)
    assert [e.delta.offset for e in result.events] == [3, 4, 5, 6]
    assert [e.delta.delta for e in result.events] == [b"d2", b"d3", b"d4", b"d5"]
    assert all(e.delta.epoch == epoch for e in result.events)
    limited = await broker.history("doc", 2, "", 2)
    assert [e.delta.offset for e in limited.events] == [3, 4]
    assert limited.recovery == RECOVERED  # an empty epoch accepts the current one
    up_to_date = await broker.history("doc", 6, epoch, 100)
    assert (up_to_date.recovery, up_to_date.events) == (RECOVERED, [])


async def test_history_outcomes(broker: Broker) -> None:
    for _ in range(3):
        await broker.publish(delta("doc"))
    epoch = (await broker.history("doc", None, "", 0)).epoch
    no_offset = await broker.history("doc", None, epoch, 10)
    assert (no_offset.recovery, no_offset.events) == (UNSPECIFIED, [])
    wrong_epoch = await broker.history("doc", 1, "not-the-epoch", 10)
    assert (wrong_epoch.recovery, wrong_epoch.events) == (EPOCH_MISMATCH, [])
    assert wrong_epoch.epoch == epoch and wrong_epoch.offset == 3
    ahead = await broker.history("doc", 9, epoch, 10)
    assert (ahead.recovery, ahead.events) == (OFFSET_AHEAD, [])


async def test_history_is_bounded_by_size(make_broker: MakeBroker) -> None:
    broker = await make_broker(history_size=5)
    for i in range(8):
        await broker.publish(delta("doc", bytes([i])))
    kept = await broker.history("doc", 3, "", 100)
    assert (kept.recovery, kept.oldest_offset, kept.offset) == (RECOVERED, 4, 8)
    assert [e.delta.offset for e in kept.events] == [4, 5, 6, 7, 8]
    too_old = await broker.history("doc", 2, "", 100)
    assert too_old.recovery == GAP_TOO_OLD
    assert [e.delta.offset for e in too_old.events] == [4, 5, 6, 7, 8]  # what is retained


async def test_history_size_zero_keeps_nothing(make_broker: MakeBroker) -> None:
    broker = await make_broker(history_size=0)
    await broker.publish(delta("doc"))
    await broker.publish(delta("doc"))
    result = await broker.history("doc", 1, "", 100)
    assert (result.recovery, result.offset, result.oldest_offset) == (GAP_TOO_OLD, 2, 0)
    assert result.events == []
    assert (await broker.history("doc", 2, "", 100)).recovery == RECOVERED


async def test_history_is_bounded_by_age() -> None:
    # The Redis broker ages history by Redis' clock: test_redis_broker covers it.
    clock = ManualClock()
    broker = MemoryBroker(history_ttl=10.0, clock=clock)
    await broker.publish(delta("doc", b"old-1"))
    await broker.publish(delta("doc", b"old-2"))
    clock.advance(10.5)  # the first two age out
    await broker.publish(delta("doc", b"new"))
    result = await broker.history("doc", 0, "", 100)
    assert [e.delta.delta for e in result.events] == [b"new"]
    assert (result.oldest_offset, result.offset, result.recovery) == (3, 3, GAP_TOO_OLD)
    assert (await broker.history("doc", 2, "", 100)).recovery == RECOVERED
    clock.advance(10.5)
    aged = await broker.history("doc", 2, "", 100)
    assert (aged.oldest_offset, aged.offset, aged.events) == (0, 3, [])
    assert aged.recovery == GAP_TOO_OLD
    assert (await broker.history("doc", 3, "", 100)).recovery == RECOVERED


@pytest.mark.parametrize(
    ("since", "epoch", "offset", "oldest", "expected"),
    [
        (None, "e", 5, 1, UNSPECIFIED),
        (3, "other", 5, 1, EPOCH_MISMATCH),
        (3, "", 5, 1, RECOVERED),
        (6, "e", 5, 1, OFFSET_AHEAD),
        (5, "e", 5, 0, RECOVERED),
        (0, "e", 5, 1, RECOVERED),
        (0, "e", 5, 2, GAP_TOO_OLD),
        (2, "e", 5, 0, GAP_TOO_OLD),
    ],
)
def test_classify_recovery(
    since: int | None, epoch: str, offset: int, oldest: int, expected: int
) -> None:
    assert classify_recovery(since, epoch, "e", offset, oldest) == expected


# ----------------------------------------------------------------- idempotency


async def test_repeated_client_message_id_is_acknowledged_not_delivered(broker: Broker) -> None:
    sink = Collector()
    await broker.attach("doc", sink)
    first = await broker.publish(delta("doc", b"once", client_message_id="m-1"))
    again = await broker.publish(delta("doc", b"once", client_message_id="m-1"))
    assert again.duplicate and not first.duplicate
    assert (again.offset, again.epoch) == (first.offset, first.epoch)
    other = await broker.publish(delta("doc", b"next", client_message_id="m-2"))
    assert other.offset == 2 and not other.duplicate
    elsewhere = await broker.publish(delta("other", client_message_id="m-1"))
    assert (elsewhere.offset, elsewhere.duplicate) == (1, False)  # ids are per collection
    await publish_marker(broker, sink, "doc")
    assert sink.offsets == [1, 2, 3]
    history = await broker.history("doc", 0, "", 100)
    assert [e.delta.offset for e in history.events] == [1, 2, 3]


async def test_client_message_ids_are_forgotten_after_the_dedupe_ttl() -> None:
    # The Redis broker's window is a key expiry: test_redis_broker covers it.
    clock = ManualClock()
    broker = MemoryBroker(dedupe_ttl=10.0, clock=clock)
    first = await broker.publish(delta("doc", client_message_id="m-1"))
    clock.advance(9.5)
    assert (await broker.publish(delta("doc", client_message_id="m-1"))).duplicate
    clock.advance(1.0)
    later = await broker.publish(delta("doc", client_message_id="m-1"))
    assert (first.offset, later.offset, later.duplicate) == (1, 2, False)


# -------------------------------------------------------------------- presence


async def test_presence_join_update_leave(broker: Broker) -> None:
    sink = Collector()
    await broker.attach("room", sink)
    user = types_pb2.UserInfo(user_id="u1", display_name="Ada")
    await broker.presence_join("room", "peer-a", user)
    await broker.presence_join("room", "peer-b", None)
    await sink.wait_until(lambda c: len(c.of_kind("peer_join")) == 2)
    join = sink.of_kind("peer_join")[0].peer_join
    assert (join.collection_id, join.peer_id, join.user_info) == ("room", "peer-a", user)
    assert join.timestamp.seconds > 0
    members = {m.peer_id: m for m in await broker.presence_members("room")}
    assert set(members) == {"peer-a", "peer-b"}
    assert members["peer-a"].user_info == user
    assert members["peer-a"].action == types_pb2.PRESENCE_ACTION_JOIN
    assert not members["peer-b"].HasField("user_info")

    update = types_pb2.Presence(
        collection_id="room",
        peer_id="peer-a",
        action=types_pb2.PRESENCE_ACTION_UPDATE,
        status="typing",
        user_info=user,
    )
    await broker.presence_update(update)
    await sink.wait_until(lambda c: len(c.of_kind("presence")) == 1)
    assert sink.of_kind("presence")[0].presence == update
    members = {m.peer_id: m for m in await broker.presence_members("room")}
    assert members["peer-a"].status == "typing"

    await broker.presence_leave("room", "peer-a", "closed")
    await broker.presence_leave("room", "peer-a", "closed")  # not present: no event
    await broker.presence_leave("room", "nobody", "closed")
    await publish_marker(broker, sink, "room")
    leaves = sink.of_kind("peer_leave")
    assert [(e.peer_leave.peer_id, e.peer_leave.reason) for e in leaves] == [("peer-a", "closed")]
    assert [m.peer_id for m in await broker.presence_members("room")] == ["peer-b"]
    assert await broker.presence_members("empty-room") == []


async def test_presence_events_follow_deltas_in_one_order(broker: Broker) -> None:
    sink = Collector()
    await broker.attach("room", sink)
    await broker.publish(delta("room"))
    await broker.presence_join("room", "peer-a", None)
    await broker.publish(delta("room"))
    await sink.wait_deltas(2)
    assert [e.WhichOneof("kind") for e in sink.events] == ["delta", "peer_join", "delta"]


async def test_presence_refresh_and_maintenance_keep_live_entries(broker: Broker) -> None:
    await broker.presence_join("room", "peer-a", None)
    await broker.presence_refresh([("room", "peer-a")])
    await broker.maintenance()
    assert [m.peer_id for m in await broker.presence_members("room")] == ["peer-a"]
    assert broker.healthy
