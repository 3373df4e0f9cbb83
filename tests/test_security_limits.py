"""Per-connection rate limits and per-address connection limits on every transport."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from client.ws_channel import WebSocketChannel
from server.app import SyncwireServer
from syncwire.v1 import sync_pb2, sync_pb2_grpc
from wire.status import REASON_CODE_METADATA_KEY, RETRY_AFTER_METADATA_KEY

from .legacy_ws_client import LegacyClient
from .security_harness import trailer
from .service_harness import TRANSPORTS, SyncStream, open_channel, running_server

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


def blob(stream: SyncStream, size: int = 1) -> int:
    return stream.send(blob=sync_pb2.Blob(data=b"x" * size))


@contextlib.asynccontextmanager
async def limited_stream(transport: str, **limits: float) -> AsyncIterator[SyncStream]:
    """A welcomed Sync stream to a server with `limits`."""
    async with running_server(**limits) as server, open_channel(server, transport) as channel:
        stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
        await stream.welcome()
        try:
            yield stream
        finally:
            await stream.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_stream_messages_over_the_rate_get_rate_limited_errors(transport: str) -> None:
    # 2 messages/s with 2 s of burst: 4 at once, then one every 500 ms.
    async with limited_stream(transport, rate_limit_messages=2.0, rate_limit_burst=2.0) as stream:
        replies = [await stream.expect_reply(i) for i in [blob(stream) for _ in range(5)]]
        assert [r.WhichOneof("kind") for r in replies] == ["binary_ack"] * 4 + ["error"]
        error = replies[-1].error
        assert (error.code, error.reason_code) == (RESOURCE_EXHAUSTED, "rate_limited")
        assert 0 < error.retry_after_ms <= 500
        assert error.message.startswith("rate limit exceeded (2 messages/s per connection)")
        # The stream carries on: reading resumed once the bucket had refilled.
        after = await stream.expect_reply(blob(stream))
        assert after.WhichOneof("kind") == "binary_ack"
        assert not stream.ended.done()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_stream_bytes_over_the_rate_get_rate_limited_errors(transport: str) -> None:
    async with limited_stream(transport, rate_limit_bytes=1000.0, rate_limit_burst=1.0) as stream:
        first, second = blob(stream, 600), blob(stream, 600)
        assert (await stream.expect_reply(first)).binary_ack.size == 600
        error = (await stream.expect_reply(second)).error
        assert (error.code, error.reason_code) == (RESOURCE_EXHAUSTED, "rate_limited")
        assert 0 < error.retry_after_ms <= 1000
        assert "1000 bytes/s" in error.message


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unary_calls_over_the_rate_fail_with_a_retry_trailer(transport: str) -> None:
    async with running_server(rate_limit_messages=1.0, rate_limit_burst=2.0) as server:
        async with open_channel(server, transport) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            request = sync_pb2.GetServerInfoRequest()
            for _ in range(2):
                await stub.GetServerInfo(request, timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetServerInfo(request, timeout=5)
            error = refused.value
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (error.details() or "").startswith(
                "rate limit exceeded (1 messages/s per connection)"
            )
            assert trailer(error, REASON_CODE_METADATA_KEY) == "rate_limited"
            retry_after = trailer(error, RETRY_AFTER_METADATA_KEY)
            assert retry_after is not None and 0 < int(retry_after) <= 1000


async def test_legacy_frames_over_the_rate_get_rate_limited_errors() -> None:
    async with running_server(rate_limit_messages=2.0, rate_limit_burst=2.0) as server:
        client = await LegacyClient.open(server.ws_url)
        for _ in range(5):
            await client.send_binary(b"x")
        replies = [await client.recv() for _ in range(5)]
        assert [r["type"] for r in replies] == ["binary_ack"] * 4 + ["error"]
        assert replies[-1]["code"] == "rate_limited"
        assert "retry in" in replies[-1]["reason"]
        await client.send_binary(b"later")
        assert (await client.recv())["type"] == "binary_ack"
        await client.ws.close()


async def _refused_sync(stub: sync_pb2_grpc.SyncServiceAsyncStub) -> grpc.aio.AioRpcError:
    stream = SyncStream(stub)
    error = await asyncio.wait_for(stream.ended, 5)
    await stream.close()
    assert error is not None
    return error


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sessions_per_address_are_limited(transport: str) -> None:
    async with running_server(max_connections_per_address=2) as server:
        async with open_channel(server, transport) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            streams = [SyncStream(stub) for _ in range(2)]
            for stream in streams:
                await stream.welcome()
            refused = await _refused_sync(stub)
            assert (refused.code(), refused.details()) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too many connections from 127.0.0.1 (limit 2)",
            )
            assert trailer(refused, REASON_CODE_METADATA_KEY) == "too_many_connections_per_address"
            assert trailer(refused, RETRY_AFTER_METADATA_KEY) == "1000"
            await streams[0].close()
            await _until_admitted(stub)
            await streams[1].close()


async def _until_admitted(stub: sync_pb2_grpc.SyncServiceAsyncStub) -> None:
    """Opens Sync streams until one is admitted (the server releases a closed session's
    slot once it has seen the close)."""
    async with asyncio.timeout(5):
        while True:
            stream = SyncStream(stub)
            try:
                await stream.welcome()
                return
            except AssertionError:
                await asyncio.sleep(0.02)
            finally:
                await stream.close()


@contextlib.asynccontextmanager
async def raw_connection(url: str) -> AsyncIterator[ClientConnection]:
    async with connect(url) as ws:
        yield ws


async def test_websocket_connections_per_address_get_http_429() -> None:
    async with running_server(max_connections_per_address=1) as server:
        async with WebSocketChannel(server.ws_url) as channel:
            await sync_pb2_grpc.SyncServiceStub(channel).GetServerInfo(
                sync_pb2.GetServerInfoRequest(), timeout=5
            )
            for offered in (["syncwire-protobuf"], None):  # typed, then legacy
                with pytest.raises(InvalidStatus) as refused:
                    await connect(server.ws_url, subprotocols=offered)  # type: ignore[arg-type]
                response = refused.value.response
                assert response.status_code == 429
                assert response.headers["Retry-After"] == "1"
            async with WebSocketChannel(server.ws_url) as second:
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await sync_pb2_grpc.SyncServiceStub(second).GetServerInfo(
                        sync_pb2.GetServerInfoRequest(), timeout=5
                    )
                assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        await _until_websocket_admitted(server)


async def _until_websocket_admitted(server: SyncwireServer) -> None:
    async with asyncio.timeout(5):
        while True:
            try:
                client = await LegacyClient.open(server.ws_url)
            except InvalidStatus:
                await asyncio.sleep(0.02)
                continue
            await client.ws.close()
            return


async def test_a_legacy_session_beyond_the_address_limit_closes_with_1013() -> None:
    async with running_server(max_connections_per_address=1) as server:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
            await stream.welcome()
            # The WebSocket handshake passes (no WebSocket connection yet); the session
            # is one too many for 127.0.0.1.
            async with raw_connection(server.ws_url) as ws:
                await ws.wait_closed()
                assert ws.close_code == 1013
                assert ws.close_reason == "too many connections from 127.0.0.1 (limit 1)"
            await stream.close()
