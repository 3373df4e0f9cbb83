"""The sync service end to end over real loopback connections, on every transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.app import SyncwireServer
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

from .service_harness import TRANSPORTS, SyncStream, open_channel, running_server

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def server() -> AsyncIterator[SyncwireServer]:
    async with running_server() as running:
        yield running


@pytest.fixture
async def stub(
    server: SyncwireServer, transport: str
) -> AsyncIterator[sync_pb2_grpc.SyncServiceAsyncStub]:
    channel = open_channel(server, transport)
    async with channel:
        yield sync_pb2_grpc.SyncServiceStub(channel)


async def test_welcome_describes_server(
    stub: sync_pb2_grpc.SyncServiceAsyncStub, server: SyncwireServer
) -> None:
    stream = SyncStream(stub)
    welcome = await stream.welcome()
    assert len(welcome.peer_id) == 36
    info = welcome.server_info
    assert info.max_connections == server.config.max_connections
    assert info.heartbeat_interval_seconds == 30
    assert info.max_message_bytes == 1024 * 1024
    assert info.protocol_version == types_pb2.PROTOCOL_VERSION_1
    assert "history" in info.features
    assert welcome.timestamp.seconds > 0
    await stream.close()


async def test_two_clients_see_deltas_in_offset_order(
    stub: sync_pb2_grpc.SyncServiceAsyncStub,
) -> None:
    alice, bob = SyncStream(stub), SyncStream(stub)
    await alice.welcome()
    await bob.welcome()
    assert (await alice.subscribe("doc-1")).offset == 0
    await bob.subscribe("doc-1")
    acks = []
    for i in range(10):
        publisher = alice if i % 2 == 0 else bob
        acks.append(await publisher.publish("doc-1", f"d{i}".encode()))
    assert [ack.offset for ack in acks] == list(range(1, 11))
    assert len({ack.epoch for ack in acks}) == 1
    for stream in (alice, bob):
        got = [await stream.expect("delta") for _ in range(10)]
        assert [r.delta.offset for r in got] == list(range(1, 11))
        assert [r.delta.delta for r in got] == [f"d{i}".encode() for i in range(10)]
        assert got[0].delta.peer_id == alice.peer_id
        assert got[1].delta.peer_id == bob.peer_id
        assert all(r.delta.server_time.seconds > 0 for r in got)
    await alice.close()
    await bob.close()


async def test_publish_is_idempotent_by_client_message_id(
    stub: sync_pb2_grpc.SyncServiceAsyncStub,
) -> None:
    stream = SyncStream(stub)
    await stream.welcome()
    await stream.subscribe("doc-idem")
    first = await stream.publish("doc-idem", b"x", client_message_id="m-1")
    again = await stream.publish("doc-idem", b"x", client_message_id="m-1")
    unary = await stub.Publish(
        sync_pb2.PublishRequest(
            delta=types_pb2.Delta(collection_id="doc-idem", delta=b"x", client_message_id="m-1")
        )
    )
    assert not first.duplicate
    assert again.duplicate and again.offset == first.offset
    assert unary.ack.duplicate and unary.ack.offset == first.offset
    other = await stream.publish("doc-idem", b"y", client_message_id="m-2")
    assert other.offset == first.offset + 1
    deltas = [await stream.expect("delta") for _ in range(2)]
    assert [d.delta.client_message_id for d in deltas] == ["m-1", "m-2"]
    await stream.close()


async def test_presence_join_update_leave_and_query(
    stub: sync_pb2_grpc.SyncServiceAsyncStub,
) -> None:
    watcher, member = SyncStream(stub), SyncStream(stub)
    await watcher.welcome()
    await member.welcome()
    await watcher.subscribe("room")
    await member.subscribe(
        "room", join_presence=True, user_info=types_pb2.UserInfo(user_id="u1", username="ann")
    )
    join = await watcher.expect("peer_join")
    assert join.peer_join.peer_id == member.peer_id
    assert join.peer_join.user_info.username == "ann"
    member.send(presence=sync_pb2.SetPresence(collection_id="room", status="typing"))
    update = await watcher.expect("presence")
    assert update.presence.status == "typing"
    assert update.presence.action == types_pb2.PRESENCE_ACTION_UPDATE
    present = await stub.GetPresence(sync_pb2.GetPresenceRequest(collection_id="room"))
    assert [m.peer_id for m in present.members] == [member.peer_id]
    assert present.members[0].status == "typing"
    await member.close()
    leave = await watcher.expect("peer_leave")
    assert leave.peer_leave.peer_id == member.peer_id
    present = await stub.GetPresence(sync_pb2.GetPresenceRequest(collection_id="room"))
    assert list(present.members) == []
    await watcher.close()


async def test_binary_blob_acked_to_sender_only(
    stub: sync_pb2_grpc.SyncServiceAsyncStub,
) -> None:
    sender, other = SyncStream(stub), SyncStream(stub)
    await sender.welcome()
    await other.welcome()
    await other.subscribe("blobs")
    await sender.subscribe("blobs")
    request_id = sender.send(blob=sync_pb2.Blob(data=b"\x00" * 1234))
    ack = await sender.expect_reply(request_id)
    assert ack.binary_ack.size == 1234
    assert ack.binary_ack.peer_id == sender.peer_id
    # The other peer sees the next delta first: the blob was not relayed.
    await sender.publish("blobs", b"marker")
    first = await other.expect_any()
    assert first.WhichOneof("kind") == "delta"
    await sender.close()
    await other.close()


async def test_history_replay_after_reconnect(
    stub: sync_pb2_grpc.SyncServiceAsyncStub,
) -> None:
    publisher = SyncStream(stub)
    await publisher.welcome()
    reader = SyncStream(stub)
    await reader.welcome()
    sub = await reader.subscribe("doc-r")
    await publisher.publish("doc-r", b"a")
    seen = await reader.expect("delta")
    await reader.close()
    for data in (b"b", b"c", b"d"):
        await publisher.publish("doc-r", data)
    again = SyncStream(stub)
    await again.welcome()
    resumed = await again.subscribe("doc-r", last_offset=seen.delta.offset, epoch=sub.epoch)
    assert resumed.recovery == sync_pb2.RECOVERY_STATUS_RECOVERED
    assert resumed.replayed == 3
    replay = [await again.expect("delta") for _ in range(3)]
    assert [r.delta.delta for r in replay] == [b"b", b"c", b"d"]
    await publisher.publish("doc-r", b"e")
    live = await again.expect("delta")
    assert live.delta.delta == b"e" and live.delta.offset == 5
    history = await stub.GetHistory(
        sync_pb2.GetHistoryRequest(collection_id="doc-r", since_offset=2, epoch=sub.epoch)
    )
    assert [d.delta for d in history.deltas] == [b"c", b"d", b"e"]
    assert history.recovery == sync_pb2.RECOVERY_STATUS_RECOVERED
    wrong_epoch = SyncStream(stub)
    await wrong_epoch.welcome()
    mismatch = await wrong_epoch.subscribe("doc-r", last_offset=1, epoch="not-the-epoch")
    assert mismatch.recovery == sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH
    # The same subscribe replays what the server holds of its epoch, from its first offset.
    assert (mismatch.epoch, mismatch.replayed, mismatch.oldest_offset) == (sub.epoch, 5, 1)
    held = [await wrong_epoch.expect("delta") for _ in range(5)]
    assert [(r.delta.offset, r.delta.epoch) for r in held] == [(i, sub.epoch) for i in range(1, 6)]
    assert [r.delta.delta for r in held] == [b"a", b"b", b"c", b"d", b"e"]
    for stream in (publisher, again, wrong_epoch):
        await stream.close()


async def test_gap_older_than_history_is_reported(transport: str) -> None:
    async with running_server(history_size=3) as small:
        async with open_channel(small, transport) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            stream = SyncStream(stub)
            await stream.welcome()
            sub = await stream.subscribe("doc-g")
            for i in range(6):
                await stream.publish("doc-g", bytes([i]))
            late = SyncStream(stub)
            await late.welcome()
            result = await late.subscribe("doc-g", last_offset=1, epoch=sub.epoch)
            assert result.recovery == sync_pb2.RECOVERY_STATUS_GAP_TOO_OLD
            assert result.oldest_offset == 4
            assert result.replayed == 3
            await stream.close()
            await late.close()


async def test_request_errors_keep_the_stream_open(
    stub: sync_pb2_grpc.SyncServiceAsyncStub,
) -> None:
    stream = SyncStream(stub)
    await stream.welcome()
    bad = stream.send(subscribe=sync_pb2.Subscribe(collection_id=""))
    error = await stream.expect_reply(bad)
    assert error.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert error.error.reason_code == "invalid_collection"
    empty = stream.send()
    error = await stream.expect_reply(empty)
    assert error.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    not_subscribed = stream.send(presence=sync_pb2.SetPresence(collection_id="nowhere"))
    error = await stream.expect_reply(not_subscribed)
    assert error.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    spoofed = stream.send(
        publish=sync_pb2.Publish(delta=types_pb2.Delta(collection_id="c", offset=99))
    )
    error = await stream.expect_reply(spoofed)
    assert error.error.reason_code == "server_fields_set"
    assert (await stream.subscribe("fine")).collection_id == "fine"
    await stream.close()


async def test_oversize_message_rejected_others_carry_on(
    stub: sync_pb2_grpc.SyncServiceAsyncStub,
) -> None:
    bystander = SyncStream(stub)
    await bystander.welcome()
    await bystander.subscribe("big")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Publish(
            sync_pb2.PublishRequest(
                delta=types_pb2.Delta(collection_id="big", delta=b"x" * (1024 * 1024 + 1))
            )
        )
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    offender = SyncStream(stub)
    await offender.welcome()
    offender.send(
        publish=sync_pb2.Publish(
            delta=types_pb2.Delta(collection_id="big", delta=b"x" * (1024 * 1024 + 1))
        )
    )
    error = await offender.ended
    assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    ok = await bystander.publish("big", b"x" * (1024 * 1024 - 64))
    assert ok.offset == 1
    await bystander.close()


async def test_malformed_messages_invalid_argument(server: SyncwireServer, transport: str) -> None:
    async with open_channel(server, transport) as channel:
        publish = channel.unary_unary(
            "/syncwire.v1.SyncService/Publish",
            request_serializer=lambda raw: raw,
            response_deserializer=sync_pb2.PublishResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await publish(b"\xff\xff\xff\xff")
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        sync = channel.stream_stream(
            "/syncwire.v1.SyncService/Sync",
            request_serializer=lambda raw: raw,
            response_deserializer=sync_pb2.SyncResponse.FromString,
        )
        call = sync(iter([b"\x0a\xff"]))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in call:
                pass
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        info = await stub.GetServerInfo(sync_pb2.GetServerInfoRequest())
        assert info.server_info.server_id == server.core.server_id


async def test_idle_session_times_out(transport: str) -> None:
    async with running_server(idle_timeout=0.5, heartbeat_interval=0.2) as quick:
        async with open_channel(quick, transport) as channel:
            stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
            await stream.welcome()
            await stream.expect("heartbeat")
            goodbye = await stream.expect("disconnect")
            assert "idle timeout" in goodbye.disconnect.reason
            error = await stream.ended
            assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE
            assert len(quick.core.registry) == 0


async def test_heartbeats_keep_session_alive(transport: str) -> None:
    async with running_server(idle_timeout=0.6, heartbeat_interval=0.2) as quick:
        async with open_channel(quick, transport) as channel:
            stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
            await stream.welcome()
            for _ in range(6):
                await stream.expect("heartbeat")
                stream.send(heartbeat=types_pb2.Heartbeat())
            assert not stream.ended.done()
            await stream.close()


async def test_slow_consumer_is_dropped_without_delaying_others(transport: str) -> None:
    async with running_server(subscriber_queue=64) as small:
        async with open_channel(small, transport) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            fast = SyncStream(stub)
            await fast.welcome()
            await fast.subscribe("hot")
            slow_session_ready = asyncio.Event()
            # A raw slow reader: subscribes, then never reads.
            slow_requests: asyncio.Queue[sync_pb2.SyncRequest] = asyncio.Queue()

            async def slow_iter() -> AsyncIterator[sync_pb2.SyncRequest]:
                while True:
                    yield await slow_requests.get()

            slow_call = stub.Sync(slow_iter())
            await slow_requests.put(
                sync_pb2.SyncRequest(
                    request_id=1, subscribe=sync_pb2.Subscribe(collection_id="hot")
                )
            )
            async for response in slow_call:
                if response.HasField("subscribed"):
                    slow_session_ready.set()
                    break
            payload = b"p" * 16384
            for i in range(400):
                await stub.Publish(
                    sync_pb2.PublishRequest(
                        delta=types_pb2.Delta(collection_id="hot", delta=payload + bytes([i % 256]))
                    )
                )
            got = [await fast.expect("delta") for _ in range(400)]
            assert [r.delta.offset for r in got] == list(range(1, 401))
            # The slow session was released at once (subscriptions, presence, slot),
            # even though its transport has not noticed yet.
            assert [s.peer_id for s in small.core.registry.sessions()] == [fast.peer_id]
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async for _ in slow_call:
                    pass
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "slow consumer" in (raised.value.details() or "")
            await fast.close()


async def test_max_connections(transport: str) -> None:
    async with running_server(max_connections=2) as tiny:
        async with open_channel(tiny, transport) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            first, second = SyncStream(stub), SyncStream(stub)
            await first.welcome()
            await second.welcome()
            third = SyncStream(stub)
            error = await third.ended
            assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await first.close()
            await second.close()


async def test_health_and_reflection(server: SyncwireServer) -> None:
    async with grpc.aio.insecure_channel(server.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="syncwire.v1.SyncService"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in reflect.ServerReflectionInfo(iter([request])):
            names = {s.name for s in answer.list_services_response.service}
            assert "syncwire.v1.SyncService" in names
            assert "grpc.health.v1.Health" in names
            break
