"""SyncClient's API against a real in-process server, over gRPC, WebSocket and in-process
channels: subscribe/publish/events, presence, errors, state, channel reuse, outbox bounds."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from client import (
    Backoff,
    ClientClosedError,
    ClientConfig,
    ConnectionState,
    DeltaEvent,
    Endpoint,
    MessageTooLargeError,
    NotSubscribedError,
    OutboxFullError,
    PeerJoined,
    PeerLeft,
    PresenceChanged,
    Recovery,
    RecoveryEvent,
    RequestFailed,
    SyncClient,
    SyncError,
)
from client.endpoints import ChannelSettings
from client.outbox import Outbox, SqliteOutboxStore
from server.app import SyncwireServer
from server.broker import MemoryBroker
from server.config import ServerConfig
from server.grpc_server import grpc_options
from syncwire.v1 import sync_pb2, types_pb2

from .client_harness import next_event
from .service_harness import running_server

pytestmark = pytest.mark.timeout(30)

CLIENT_TRANSPORTS = ["grpc", "websocket", "inprocess"]


def endpoint_of(server: SyncwireServer, transport: str) -> Endpoint:
    if transport == "grpc":
        return Endpoint.parse(f"grpc://{server.grpc_address}")
    if transport == "websocket":
        return Endpoint.parse(server.ws_url)
    return Endpoint.in_process(server.ws_server)


@pytest.fixture
async def server() -> AsyncIterator[SyncwireServer]:
    async with running_server() as running:
        yield running


@pytest.fixture(params=CLIENT_TRANSPORTS)
def endpoint(request: pytest.FixtureRequest, server: SyncwireServer) -> Endpoint:
    return endpoint_of(server, str(request.param))


async def test_publish_subscribe_and_deltas_in_order(endpoint: Endpoint) -> None:
    async with SyncClient(endpoint) as alice, SyncClient(endpoint) as bob:
        await alice.connect()
        assert alice.state is ConnectionState.CONNECTED
        assert alice.endpoint == endpoint
        assert len(alice.peer_id) == 36
        info = alice.server_info
        assert info is not None and info.heartbeat_interval_seconds == 30
        sub = await bob.subscribe("doc")
        assert (sub.offset, sub.recovery, sub.active) == (0, Recovery.NONE, True)
        acks = [
            await alice.publish("doc", f"d{i}".encode(), crdt_type=types_pb2.CRDT_TYPE_RGA)
            for i in range(20)
        ]
        assert [ack.offset for ack in acks] == list(range(1, 21))
        assert all(ack.epoch == sub.epoch and not ack.duplicate for ack in acks)
        assert all(ack.client_message_id for ack in acks)
        received = [await next_event(bob, DeltaEvent) for _ in range(20)]
        assert [e.offset for e in received] == list(range(1, 21))
        assert [e.data for e in received] == [f"d{i}".encode() for i in range(20)]
        assert received[0].delta.peer_id == alice.peer_id
        assert received[0].delta.replica_id == alice.replica_id
        assert received[0].delta.crdt_type == types_pb2.CRDT_TYPE_RGA
        assert sub.offset == 20
        assert bob.stats.deltas == 20


async def test_presence_join_update_leave(endpoint: Endpoint) -> None:
    async with SyncClient(endpoint) as alice, SyncClient(endpoint) as bob:
        await bob.subscribe("room", join_presence=True)
        await alice.subscribe(
            "room", join_presence=True, user_info=types_pb2.UserInfo(user_id="alice")
        )
        joined = await next_event(bob, PeerJoined, lambda e: e.join.peer_id == alice.peer_id)
        assert joined.join.user_info.user_id == "alice"
        assert joined.collection_id == "room"
        alice.set_presence("room", status="typing")
        changed = await next_event(bob, PresenceChanged)
        assert changed.presence.status == "typing"
        members = await bob.presence("room")
        assert {m.peer_id for m in members} == {alice.peer_id, bob.peer_id}
        await alice.unsubscribe("room")
        left = await next_event(bob, PeerLeft)
        assert left.leave.peer_id == alice.peer_id
        assert [m.peer_id for m in await bob.presence("room")] == [bob.peer_id]
        with pytest.raises(NotSubscribedError):
            alice.set_presence("room", status="gone")


async def test_unsubscribe_stops_delivery_and_history_reads(endpoint: Endpoint) -> None:
    async with SyncClient(endpoint) as client:
        sub = await client.subscribe("notes")
        await client.publish("notes", b"one")
        assert (await next_event(client, DeltaEvent)).data == b"one"
        await sub.unsubscribe()
        assert "notes" not in client.subscriptions
        await client.publish("notes", b"two")
        history = await client.history("notes")
        assert [d.delta for d in history.deltas] == [b"one", b"two"]
        blob = await client.send_blob(b"\x00" * 10)
        assert blob.size == 10
        with pytest.raises(NotSubscribedError):
            await client.unsubscribe("notes")


async def test_server_refusals_are_typed_errors(endpoint: Endpoint) -> None:
    async with SyncClient(endpoint) as client:
        with pytest.raises(RequestFailed) as refused:
            await client.subscribe("")
        assert refused.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.reason_code
        assert "" not in client.subscriptions
        with pytest.raises(RequestFailed) as bad_publish:
            await client.publish("", b"x")
        assert bad_publish.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert client.outbox_size == 0  # refused for good: not retried
        await client.subscribe("ok")
        with pytest.raises(SyncError) as twice:
            await client.subscribe("ok")
        assert twice.value.code is grpc.StatusCode.ALREADY_EXISTS


async def test_one_channel_serves_every_call(server: SyncwireServer) -> None:
    async with SyncClient(f"grpc://{server.grpc_address}") as client:
        await client.subscribe("a")
        await client.subscribe("b")
        for _ in range(10):
            await client.publish("a", b"x")
            await client.presence("a")
            await client.history("b")
        assert client._pool.opened == 1
        assert client.stats.connect_attempts == 1


async def test_state_changes_and_closed_client(server: SyncwireServer) -> None:
    client = SyncClient(f"grpc://{server.grpc_address}")
    seen: list[ConnectionState] = []
    remove = client.on_state_change(lambda change: seen.append(change.state))
    changes = client.state_changes()
    assert client.state is ConnectionState.OFFLINE  # not started
    await client.connect()
    await client.close()
    expected = [ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.CLOSED]
    assert seen == expected
    assert [c.state async for c in changes] == expected
    remove()
    with pytest.raises(ClientClosedError):
        client.submit("doc", b"x")
    with pytest.raises(ClientClosedError):
        await client.subscribe("doc")
    assert [e async for e in client.events()] == []


async def test_outbox_is_bounded_while_offline() -> None:
    # Nothing listens on this port: the client stays offline and queues.
    config = ClientConfig(outbox_limit=3, backoff=Backoff(base=0.05, cap=0.1))
    async with SyncClient("grpc://127.0.0.1:9", config) as client:
        pending = [client.submit("doc", f"{i}".encode()) for i in range(3)]
        with pytest.raises(OutboxFullError) as full:
            client.submit("doc", b"overflow")
        assert full.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.outbox_size == 3
        assert client.state is ConnectionState.CONNECTING
        await client.close(flush_timeout=0)
    for item in pending:
        with pytest.raises(ClientClosedError):
            await item


def state_of(client: SyncClient) -> ConnectionState:
    return client.state  # (a call: mypy keeps no narrowing of the property across awaits)


async def test_attempts_exhausted_goes_offline_until_reconnect() -> None:
    config = ClientConfig(backoff=Backoff(base=0.01, cap=0.02, max_attempts=2))
    async with SyncClient("grpc://127.0.0.1:9", config) as client:
        with pytest.raises(SyncError) as failed:
            await client.connect()
        assert failed.value.code is grpc.StatusCode.UNAVAILABLE
        assert client.state is ConnectionState.OFFLINE
        assert client.stats.connect_attempts == 2
        await client.reconnect()  # a fresh round of attempts
        assert state_of(client) is ConnectionState.CONNECTING
        assert await client.wait_for_state(ConnectionState.OFFLINE) is ConnectionState.OFFLINE
        assert client.stats.connect_attempts == 4


def test_backoff_is_full_jitter_and_capped() -> None:
    backoff = Backoff(base=0.5, cap=20.0, rng=random.Random(7))
    assert [backoff.bound(n) for n in (1, 2, 3, 6, 7, 100, 10_000)] == [
        0.5,
        1.0,
        2.0,
        16.0,
        20.0,
        20.0,
        20.0,
    ]
    delays = [backoff.delay(3) for _ in range(2000)]
    assert 0 <= min(delays) < 0.1 and 1.9 < max(delays) <= 2.0  # the whole [0, bound] range
    assert not backoff.exhausted(10**6)
    assert Backoff(max_attempts=3).exhausted(3)
    with pytest.raises(ValueError):
        Backoff(base=2, cap=1)


def test_liveness_follows_the_server_unless_overridden() -> None:
    assert ClientConfig().liveness(30) == (30.0, 62.0)
    assert ClientConfig(heartbeat_interval=5).liveness(30) == (5.0, 62.0)
    assert ClientConfig(heartbeat_timeout=7).liveness(1) == (1.0, 7.0)
    assert ClientConfig().liveness(None) == (25.0, 52.0)


def test_grpc_keepalive_respects_the_server_ping_policy() -> None:
    server_options = dict(grpc_options(ServerConfig()))
    allowed_ms = server_options["grpc.http2.min_ping_interval_without_data_ms"]
    for settings in (ChannelSettings(), ChannelSettings(keepalive_time=0.1)):
        client_options = dict(settings.grpc_options())
        assert int(client_options["grpc.keepalive_time_ms"]) >= allowed_ms  # no too_many_pings
        assert client_options["grpc.keepalive_permit_without_calls"] == 1
        assert server_options["grpc.keepalive_permit_without_calls"] == 1
        assert client_options["grpc.use_local_subchannel_pool"] == 1


async def test_unsolicited_notices_and_new_epochs_are_surfaced(server: SyncwireServer) -> None:
    async with SyncClient(f"grpc://{server.grpc_address}") as client:
        sub = await client.subscribe("doc")
        await client.publish("doc", b"one")
        await next_event(client, DeltaEvent)
        old_epoch = sub.epoch
        broker = server.core.broker
        assert isinstance(broker, MemoryBroker)
        # What a Redis-backed node pushes when Redis lost the collection's history.
        notice = sync_pb2.Subscribed(
            collection_id="doc",
            epoch="rebuilt",
            offset=7,
            recovery=sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH,
        )
        broker.hub.dispatch("doc", sync_pb2.SyncResponse(subscribed=notice))
        event = await next_event(client, RecoveryEvent)
        assert (event.recovery, event.unsolicited) == (Recovery.EPOCH_MISMATCH, True)
        assert (event.previous_epoch, event.previous_offset) == (old_epoch, 1)
        assert (sub.epoch, sub.offset) == ("rebuilt", 7)
        # A delta of yet another epoch without any notice is reported, then delivered.
        await client.publish("doc", b"two")
        surprise = await next_event(client, RecoveryEvent)
        assert (surprise.recovery, surprise.epoch, surprise.previous_epoch) == (
            Recovery.EPOCH_MISMATCH,
            old_epoch,
            "rebuilt",
        )
        delta = await next_event(client, DeltaEvent)
        assert (delta.data, delta.offset, sub.epoch) == (b"two", 2, old_epoch)
        assert client.stats.gaps == 2


def test_outbox_file_keeps_order_and_forgets_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"

    async def fill() -> list[str]:
        outbox = Outbox.open(path, limit=10)
        entries = [
            outbox.add(
                types_pb2.Delta(collection_id="c", delta=bytes([i]), client_message_id=f"m{i}")
            )
            for i in range(4)
        ]
        outbox.acknowledge(entries[1], sync_pb2.PublishAck(offset=1))
        assert [e.client_message_id for e in outbox.after(entries[0].seq)] == ["m2", "m3"]
        outbox.close()
        return [e.client_message_id for e in entries]

    async def reopen() -> list[tuple[str, bytes]]:
        outbox = Outbox.open(path, limit=2)
        left = [(e.client_message_id, e.delta.delta) for e in outbox.after(0)]
        assert all(e.waiter is None for e in outbox.after(0))
        assert len(outbox) == 3  # loaded beyond the limit: nothing persisted is dropped
        with pytest.raises(OutboxFullError):
            outbox.add(types_pb2.Delta(collection_id="c", client_message_id="m9"))
        outbox.close()
        return left

    assert asyncio.run(fill()) == ["m0", "m1", "m2", "m3"]
    assert asyncio.run(reopen()) == [("m0", b"\x00"), ("m2", b"\x02"), ("m3", b"\x03")]


def test_outbox_file_writes_off_the_loop_keep_order_and_never_reuse_numbers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    store = SqliteOutboxStore(path)
    assert store.load() == []
    seqs = [store.add(f"m{i}", bytes([i])) for i in range(3)]
    for seq in seqs:
        store.remove(seq)
    assert seqs == [1, 2, 3]
    store.close()  # waits for the writer thread

    reopened = SqliteOutboxStore(path)
    assert reopened.load() == []
    assert reopened.add("m3", b"\x03") == 4  # numbers of removed entries are not reused
    reopened.add("m3", b"\x04")  # a client message id used twice: logged, first kept
    reopened.close()
    again = SqliteOutboxStore(path)
    assert again.load() == [(4, b"\x03")]
    again.close()


@pytest.mark.parametrize("transport", ["grpc", "websocket"])
async def test_oversize_deltas_are_refused_without_breaking_the_stream(transport: str) -> None:
    async with running_server(max_message_bytes=2048) as server:
        client = SyncClient(endpoint_of(server, transport))
        queued_offline = client.submit("doc", b"x" * 4096)  # limit unknown yet: queued
        async with client:
            with pytest.raises(MessageTooLargeError) as refused:
                await queued_offline
            assert refused.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.value.limit == 2048
            with pytest.raises(MessageTooLargeError):
                client.submit("doc", b"x" * 4096)  # known now: refused at once
            assert (await client.publish("doc", b"x" * 1500)).offset == 1
            assert client.stats.disconnects == 0 and client.outbox_size == 0


async def test_state_changes_iterators_are_bounded_and_forgotten() -> None:
    import gc

    from client.state import (
        STATE_CHANGES_LIMIT,
        ConnectionState,
        StateChangesOverflow,
        StateTracker,
    )

    tracker = StateTracker(ConnectionState.OFFLINE)
    laggard = tracker.changes()  # never iterated until far too late
    dropped = tracker.changes()
    del dropped
    gc.collect()
    states = [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
    for i in range(STATE_CHANGES_LIMIT * 4):
        tracker.set(states[i % 2])
    assert len(tracker._observers) == 1  # the dropped iterator is forgotten
    kept = []
    with pytest.raises(StateChangesOverflow) as raised:
        async for change in laggard:
            kept.append(change.state)
    assert len(kept) == STATE_CHANGES_LIMIT  # the oldest, in order, then the clear error
    assert kept[:2] == states
    assert raised.value.reason_code == "state_changes_overflow"
    assert len(tracker._observers) == 0


@pytest.mark.timeout(30)
async def test_publish_refused_with_retry_after_is_sent_again_without_a_later_publish() -> None:
    """A retryable refusal (here the rate limit) of the only queued publish: it is sent
    again after retry_after, even though no other publish wakes the sender."""
    async with running_server(rate_limit_messages=5.0, rate_limit_burst=0.2) as server:
        config = ClientConfig(heartbeat_interval=30.0)
        async with SyncClient([endpoint_of(server, "grpc").url], config) as client:
            await client.connect()
            offsets = []
            for i in range(4):  # a burst of 1 message: publishes after the first wait
                async with asyncio.timeout(10):
                    offsets.append((await client.publish("doc", f"{i}".encode())).offset)
            assert offsets == [1, 2, 3, 4]
            assert client.stats.publishes_sent > 4  # some were refused and sent again
