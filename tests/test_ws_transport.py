"""The same typed stub code over grpc.aio, WebSocketChannel and InProcessChannel."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.wrappers_pb2 import Int32Value, StringValue

from client.ws_channel import WebSocketChannel
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from tests.ws_testing import KINDS, TRANSPORTS, running_servers


def _publish(action: str, data: bytes = b"") -> sync_pb2.PublishRequest:
    return sync_pb2.PublishRequest(delta=types_pb2.Delta(collection_id=action, delta=data))


def _user_md(metadata: Any) -> list[tuple[str, Any]]:
    """Metadata without what grpc adds on its own (grpc-*, user-agent...)."""
    return [(k, v) for k, v in metadata or () if not k.startswith("grpc-") and k != "user-agent"]


async def _error(awaitable: Any) -> tuple[grpc.StatusCode, str | None, list[tuple[str, Any]]]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    error = info.value
    return error.code(), error.details(), _user_md(error.trailing_metadata())


async def _exercise(channel: grpc.aio.Channel) -> list[Any]:
    """Every call kind and handler style, statuses and metadata; returns what it saw."""
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    seen: list[Any] = []
    seen.append(
        await stub.Publish(
            _publish("plain", b"abc"), metadata=(("x-user", "ann"), ("x-blob-bin", b"\x01"))
        )
    )
    call = stub.Publish(_publish("metadata"))
    seen += [
        await call,
        _user_md(await call.initial_metadata()),
        _user_md(await call.trailing_metadata()),
    ]
    seen += [await call.code(), await call.details()]
    seen.append(await stub.GetServerInfo(sync_pb2.GetServerInfoRequest()))
    seen.append(await _error(stub.Publish(_publish("abort"))))
    seen.append(await _error(stub.Publish(_publish("raise"))))
    seen.append(await _error(stub.Publish(_publish("set-code"))))
    seen.append(await _error(stub.GetHistory(sync_pb2.GetHistoryRequest())))

    async def blobs() -> AsyncIterator[sync_pb2.SyncRequest]:
        for i in range(3):
            yield sync_pb2.SyncRequest(request_id=i, blob=sync_pb2.Blob(data=f"b{i}".encode()))

    seen.append([response async for response in stub.Sync(blobs())])
    sync_call = stub.Sync(None)
    await sync_call.write(sync_pb2.SyncRequest(request_id=7, blob=sync_pb2.Blob(data=b"w")))
    seen.append(await sync_call.read())
    await sync_call.done_writing()
    seen += [await sync_call.read() is grpc.aio.EOF, await sync_call.code()]  # type: ignore[attr-defined]

    i32: dict[str, Any] = {
        "request_serializer": Int32Value.SerializeToString,
        "response_deserializer": Int32Value.FromString,
    }
    for name in ("Count", "CountWriter", "CountSync"):
        seen.append(
            [r.value async for r in channel.unary_stream(KINDS + name, **i32)(Int32Value(value=3))]
        )
    seen.append(
        await channel.stream_unary(KINDS + "Total", **i32)(
            iter([Int32Value(value=v) for v in (1, 2, 3)])
        )
    )
    total = channel.stream_unary(KINDS + "TotalReader", **i32)(None)
    for value in (4, 5):
        await total.write(Int32Value(value=value))
    await total.done_writing()
    seen.append(await total)
    text: dict[str, Any] = {
        "request_serializer": StringValue.SerializeToString,
        "response_deserializer": StringValue.FromString,
    }
    echo = channel.stream_stream(KINDS + "EchoWriter", **text)(None)
    await echo.write(StringValue(value="hi"))
    seen.append(await echo.read())
    await echo.done_writing()
    seen.append(await echo.read() is grpc.aio.EOF)  # type: ignore[attr-defined]
    seen.append(await channel.unary_unary(KINDS + "UpperSync", **text)(StringValue(value="up")))
    seen.append(await _error(channel.unary_unary(KINDS + "Nope", **text)(StringValue())))
    return seen


@pytest.mark.timeout(30)
async def test_same_stub_code_gives_the_same_results_over_every_transport() -> None:
    async with running_servers() as servers:
        results = {
            transport: await _exercise(servers.channel(transport)) for transport in TRANSPORTS
        }
    assert results["grpc"][0].ack.epoch == "x-user='ann',x-blob-bin=b'\\x01'"
    assert results["ws"] == results["grpc"]
    assert results["inprocess"] == results["grpc"]
    errors = [item for item in results["ws"] if isinstance(item, tuple)]
    assert errors == [
        (
            grpc.StatusCode.PERMISSION_DENIED,
            "not yours",
            [("reason", "test"), ("blob-bin", b"\x00\x01")],
        ),
        (grpc.StatusCode.UNKNOWN, "Unexpected <class 'ValueError'>: boom", []),
        (grpc.StatusCode.FAILED_PRECONDITION, "precondition", []),
        (
            grpc.StatusCode.UNIMPLEMENTED,
            "Unexpected <class 'NotImplementedError'>: Method not implemented!",
            [],
        ),
        (grpc.StatusCode.UNIMPLEMENTED, "Method not found!", []),
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_deadline_exceeded_cancels_the_handler(transport: str) -> None:
    async with running_servers() as servers:
        stub = sync_pb2_grpc.SyncServiceStub(servers.channel(transport))
        code, details, _ = await _error(stub.Publish(_publish("hang"), timeout=0.3))
        assert code is grpc.StatusCode.DEADLINE_EXCEEDED and details == "Deadline Exceeded"
        await asyncio.wait_for(servers.servicer.cancelled.wait(), 5)
        # The handler saw the caller's deadline. Not `<= 0.3` exactly: gRPC core's
        # grpc-timeout encoding "may round up" (src/core/lib/transport/timeout_encoding.h),
        # so a native gRPC server's deadline may sit a fraction past the caller's.
        assert (
            servers.servicer.time_remaining is not None
            and 0 < servers.servicer.time_remaining <= 0.3 * 1.1
        )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_client_cancel_reaches_the_servicer(transport: str) -> None:
    async with running_servers() as servers:
        stub = sync_pb2_grpc.SyncServiceStub(servers.channel(transport))
        call = stub.Publish(_publish("hang"))
        assert await servers.servicer.started.get() == "hang"
        assert call.cancel()
        await asyncio.wait_for(servers.servicer.cancelled.wait(), 5)
        assert call.cancelled() and await call.code() is grpc.StatusCode.CANCELLED
        with pytest.raises(asyncio.CancelledError):
            await call


@pytest.mark.parametrize("transport", ["ws", "inprocess"])
async def test_cancelling_a_stream_cancels_its_handler_and_marks_the_context(
    transport: str,
) -> None:
    contexts: list[Any] = []

    async def watch(request: Int32Value, context: Any) -> AsyncIterator[Int32Value]:
        contexts.append(context)
        yield Int32Value(value=1)
        await asyncio.Event().wait()

    handler = grpc.method_handlers_generic_handler(
        "test.Watch",
        {
            "Watch": grpc.unary_stream_rpc_method_handler(
                watch,
                request_deserializer=Int32Value.FromString,
                response_serializer=Int32Value.SerializeToString,
            )
        },
    )
    async with running_servers() as servers:
        servers.ws_server.add_generic_rpc_handlers((handler,))
        done = asyncio.Event()
        call = servers.channel(transport).unary_stream(
            "/test.Watch/Watch",
            request_serializer=Int32Value.SerializeToString,
            response_deserializer=Int32Value.FromString,
        )(Int32Value())
        first = await call.read()
        assert isinstance(first, Int32Value) and first.value == 1
        contexts[0].add_done_callback(lambda context: done.set())
        call.cancel()
        await asyncio.wait_for(done.wait(), 5)
        assert contexts[0].cancelled() and contexts[0].done()
        with pytest.raises(asyncio.CancelledError):
            await call.read()


@pytest.mark.timeout(30)
async def test_a_hundred_concurrent_calls_share_one_websocket() -> None:
    async with running_servers() as servers:
        channel = servers.channel("ws")
        assert isinstance(channel, WebSocketChannel)
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        servers.servicer.expected = 100
        calls = [stub.Publish(_publish("wait", bytes(i))) for i in range(100)]
        # All 100 handlers are running at once before any may finish.
        await asyncio.wait_for(servers.servicer.all_arrived.wait(), 10)
        assert len(servers.ws_server.connections) == 1
        assert servers.ws_server.connections[0].call_count == 100
        servers.servicer.gate.set()
        responses = await asyncio.gather(*calls)
        assert sorted(r.ack.offset for r in responses) == list(range(100))
        assert channel.connection_count == 1 and len(servers.ws_server.connections) == 1


async def test_peer_handshake_authorization_and_metadata_reach_the_servicer() -> None:
    async with running_servers() as servers:
        channel = servers.channel(
            "ws", headers={"Authorization": "Bearer tok", "x-from": "handshake"}
        )
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        response = await stub.Publish(_publish("peer"), metadata=(("x-call", "1"),))
        assert re.fullmatch(r"ipv4:127\.0\.0\.1:\d+", response.ack.client_message_id)
        # Call metadata only; the handshake's authorization is merged in, other headers not.
        assert response.ack.epoch == "x-call='1'"
        context_md: list[Any] = []

        class Probe(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
            async def intercept_service(self, continuation: Any, details: Any) -> Any:
                context_md.append(dict(details.invocation_metadata))
                return await continuation(details)

        servers.ws_server._registry._interceptors = (Probe(),)
        await stub.Publish(_publish("plain"))
        await stub.Publish(_publish("plain"), metadata=(("authorization", "Bearer call"),))
        assert [md.get("authorization") for md in context_md] == ["Bearer tok", "Bearer call"]


async def test_dropped_connection_fails_open_calls_with_unavailable_and_the_next_call_reconnects() -> (
    None
):
    async with running_servers() as servers:
        channel = servers.channel("ws")
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        call = stub.Sync(None)
        await call.write(sync_pb2.SyncRequest(request_id=1, blob=sync_pb2.Blob(data=b"x")))
        await call.read()
        (driver,) = servers.ws_server.connections
        driver._transport.transport.abort()  # type: ignore[attr-defined]  # the TCP connection dies
        assert await call.code() is grpc.StatusCode.UNAVAILABLE
        assert "connection lost" in await call.details()
        assert (await stub.Publish(_publish("plain", b"12"))).ack.offset == 2
        assert channel.get_state() is grpc.ChannelConnectivity.READY


async def test_channel_states_ready_and_close() -> None:
    async with running_servers() as servers:
        channel = servers.channel("ws")
        assert channel.get_state() is grpc.ChannelConnectivity.IDLE
        await asyncio.wait_for(channel.channel_ready(), 5)
        assert channel.get_state() is grpc.ChannelConnectivity.READY
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        pending = stub.Publish(_publish("hang"))
        await servers.servicer.started.get()
        await channel.close(grace=None)
        assert await pending.code() is grpc.StatusCode.CANCELLED
        assert channel.get_state() is grpc.ChannelConnectivity.SHUTDOWN
        with pytest.raises(grpc.aio.UsageError):
            stub.Publish(_publish("plain"))


async def test_unreachable_server_fails_calls_with_unavailable() -> None:
    async with running_servers() as servers:
        url = servers.ws_url
    channel = WebSocketChannel(url)
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    code, details, _ = await _error(stub.Publish(_publish("plain")))
    assert code is grpc.StatusCode.UNAVAILABLE and details and "failed to connect" in details
    assert channel.get_state() is grpc.ChannelConnectivity.TRANSIENT_FAILURE
    await channel.close()


async def test_broadcast_objects_are_serialized_once_and_mutations_are_not_lost() -> None:
    shared = sync_pb2.SyncResponse(request_id=42)

    async def broadcast(request: Int32Value, context: Any) -> AsyncIterator[sync_pb2.SyncResponse]:
        yield shared
        mutable = sync_pb2.SyncResponse(request_id=1)
        yield mutable
        mutable.request_id = 2
        yield mutable

    handler = grpc.method_handlers_generic_handler(
        "test.Broadcast",
        {
            "Fan": grpc.unary_stream_rpc_method_handler(
                broadcast,
                request_deserializer=Int32Value.FromString,
                response_serializer=sync_pb2.SyncResponse.SerializeToString,
            )
        },
    )
    async with running_servers() as servers:
        servers.ws_server.add_generic_rpc_handlers((handler,))
        channel = servers.channel("ws")
        fan = channel.unary_stream(
            "/test.Broadcast/Fan",
            request_serializer=Int32Value.SerializeToString,
            response_deserializer=sync_pb2.SyncResponse.FromString,
        )

        async def collect() -> list[int]:
            return [r.request_id async for r in fan(Int32Value())]

        received = await asyncio.gather(*(collect() for _ in range(10)))
        assert received == [[42, 1, 2]] * 10
        assert servers.ws_server._cache.hits >= 9
