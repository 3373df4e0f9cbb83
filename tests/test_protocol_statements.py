"""docs/protocol.md's statements about the sync service, observed on a real server over
native gRPC and over the WebSocket framing: presence answers, half-close, unary Publish,
GetHistory's edges, ServerInfo features, undecodable and oversize requests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from server.app import SyncwireServer
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

from .service_harness import SyncStream, open_channel, running_server

pytestmark = pytest.mark.timeout(60)

HISTORY_SIZE = 5


@pytest.fixture
async def server() -> AsyncIterator[SyncwireServer]:
    async with running_server(history_size=HISTORY_SIZE, max_message_bytes=1024) as running:
        yield running


@pytest.fixture(params=["grpc", "ws"])
async def channel(
    request: pytest.FixtureRequest, server: SyncwireServer
) -> AsyncIterator[grpc.aio.Channel]:
    opened = open_channel(server, str(request.param))
    yield opened
    await opened.close(None)


async def test_set_presence_is_confirmed_by_the_senders_own_events(
    channel: grpc.aio.Channel,
) -> None:
    stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
    await stream.welcome()
    await stream.subscribe("room")
    request_id = stream.send(
        presence=sync_pb2.SetPresence(
            collection_id="room", action=types_pb2.PRESENCE_ACTION_JOIN, status="here"
        )
    )
    joined = await stream.expect("peer_join")
    assert joined.request_id == 0 and joined.peer_join.peer_id == stream.peer_id
    # No direct answer: by the time a later publish is acknowledged, none came.
    marker = await stream.publish("room", b"after")
    assert marker.offset == 1
    assert [r for r in stream.received if r.request_id == request_id] == []
    await stream.close()


async def test_half_close_ends_ok_with_peer_leave_closed(channel: grpc.aio.Channel) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    watcher, leaving = SyncStream(stub), SyncStream(stub)
    for stream in (watcher, leaving):
        await stream.welcome()
        await stream.subscribe("room", join_presence=True)
    leaving.half_close()
    assert await leaving.ended is None  # status OK
    assert not any(r.HasField("disconnect") for r in leaving.received)
    left = await watcher.expect("peer_leave", lambda r: r.peer_leave.peer_id == leaving.peer_id)
    assert left.peer_leave.reason == "closed"
    await watcher.close()


async def test_unary_publish_has_no_peer_id(channel: grpc.aio.Channel) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    stream = SyncStream(stub)
    await stream.welcome()
    await stream.subscribe("doc")
    delta = types_pb2.Delta(collection_id="doc", delta=b"x")
    ack = (await stub.Publish(sync_pb2.PublishRequest(delta=delta))).ack
    received = await stream.expect("delta")
    assert (received.delta.offset, received.delta.peer_id) == (ack.offset, "")
    assert received.delta.epoch == ack.epoch and received.delta.server_time.seconds > 0
    await stream.close()


async def test_get_history_edges_and_limit(channel: grpc.aio.Channel) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    unused = await stub.GetHistory(sync_pb2.GetHistoryRequest(collection_id="unused"))
    assert (unused.offset, unused.oldest_offset, list(unused.deltas)) == (0, 0, [])
    assert unused.recovery == sync_pb2.RECOVERY_STATUS_RECOVERED and unused.epoch
    ahead = await stub.GetHistory(
        sync_pb2.GetHistoryRequest(collection_id="unused-2", since_offset=5)
    )
    assert ahead.recovery == sync_pb2.RECOVERY_STATUS_OFFSET_AHEAD

    for n in range(HISTORY_SIZE):
        delta = types_pb2.Delta(collection_id="full", delta=f"{n}".encode())
        await stub.Publish(sync_pb2.PublishRequest(delta=delta))
    whole = await stub.GetHistory(sync_pb2.GetHistoryRequest(collection_id="full"))
    assert whole.recovery == sync_pb2.RECOVERY_STATUS_RECOVERED
    assert [d.offset for d in whole.deltas] == [1, 2, 3, 4, 5]
    many = await stub.GetHistory(sync_pb2.GetHistoryRequest(collection_id="full", limit=100))
    assert len(many.deltas) == HISTORY_SIZE
    two = await stub.GetHistory(sync_pb2.GetHistoryRequest(collection_id="full", limit=2))
    assert [d.offset for d in two.deltas] == [1, 2]

    await stub.Publish(sync_pb2.PublishRequest(delta=types_pb2.Delta(collection_id="full")))
    trimmed = await stub.GetHistory(sync_pb2.GetHistoryRequest(collection_id="full"))
    assert (trimmed.oldest_offset, trimmed.offset) == (2, 6)
    assert trimmed.recovery == sync_pb2.RECOVERY_STATUS_GAP_TOO_OLD


async def test_server_info_features(channel: grpc.aio.Channel) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    info = (await stub.GetServerInfo(sync_pb2.GetServerInfoRequest())).server_info
    assert list(info.features) == [
        "presence",
        "history",
        "recovery",
        "idempotent-publish",
        "binary-ack",
        "legacy-json",
    ]


@pytest.mark.parametrize("transport", ["grpc", "ws"])
async def test_undecodable_and_oversize_requests(server: SyncwireServer, transport: str) -> None:
    channel = open_channel(server, transport)
    try:
        raw: dict[str, None] = {"request_serializer": None, "response_deserializer": None}
        history = channel.unary_unary("/syncwire.v1.SyncService/GetHistory", **raw)
        health = channel.unary_unary("/grpc.health.v1.Health/Check", **raw)
        with pytest.raises(grpc.aio.AioRpcError) as sync_service:
            await history(b"\xff\xff\xff", timeout=10)
        assert sync_service.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert str(sync_service.value.details()).startswith("malformed request message (3 bytes): ")
        with pytest.raises(grpc.aio.AioRpcError) as other:
            await health(b"\xff\xff\xff", timeout=10)
        assert other.value.code() is grpc.StatusCode.UNKNOWN
        assert str(other.value.details()).startswith(
            "Unexpected <class 'google.protobuf.message.DecodeError'>: "
        )
        with pytest.raises(grpc.aio.AioRpcError) as oversize:
            await history(b"\x0a\xd0\x0f" + b"x" * 2000, timeout=10)
        assert oversize.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        prefix = "SERVER: Received" if transport == "grpc" else "Sent"
        assert oversize.value.details() == f"{prefix} message larger than max (2003 vs. 1024)"
    finally:
        await channel.close(None)
