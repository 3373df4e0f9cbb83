"""An application's own services next to SyncService: one port pair serves both, over
native gRPC and over one shared WebSocket connection; health and reflection list them
on both ports; SyncService's lenient decoding stays SyncService's; ``--services
MODULE:FUNCTION`` does the same for ``python -m server`` / ``syncwire serve``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from src.proto.grpc.testing import empty_pb2, messages_pb2, test_pb2_grpc

from client.ws_channel import WebSocketChannel
from server.app import SyncwireServer
from syncwire.v1 import sync_pb2, sync_pb2_grpc
from tests.interop.servicer import register_interop_service
from tests.process_harness import run_python, start_server_process
from tests.service_harness import test_config as sync_config

TEST_SERVICE = "grpc.testing.TestService"
RAW: dict[str, Any] = {"request_serializer": None, "response_deserializer": None}


@contextlib.asynccontextmanager
async def app_server() -> AsyncIterator[SyncwireServer]:
    server = SyncwireServer(sync_config(), services=[register_interop_service])
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=1.0)


def _channels(server: SyncwireServer) -> list[grpc.aio.Channel]:
    return [grpc.aio.insecure_channel(server.grpc_address), WebSocketChannel(server.ws_url)]


async def test_application_service_and_sync_service_share_one_websocket() -> None:
    async with app_server() as server, WebSocketChannel(server.ws_url) as channel:
        app = test_pb2_grpc.TestServiceStub(channel)
        sync = sync_pb2_grpc.SyncServiceStub(channel)
        async with asyncio.timeout(20):
            reply = await app.UnaryCall(messages_pb2.SimpleRequest(response_size=3))
            info = await sync.GetServerInfo(sync_pb2.GetServerInfoRequest())
            assert await app.EmptyCall(empty_pb2.Empty()) == empty_pb2.Empty()
        assert reply.payload.body == b"\x00\x00\x00" and info.server_info.version
        assert channel.connection_count == 1
        assert server.app_service_names == [TEST_SERVICE]


@pytest.mark.parametrize("listener", ["grpc", "ws"])
async def test_health_and_reflection_list_the_application_service(listener: str) -> None:
    async with app_server() as server:
        channel = _channels(server)[0 if listener == "grpc" else 1]
        async with channel, asyncio.timeout(20):
            health = health_pb2_grpc.HealthStub(channel)
            for name in (TEST_SERVICE, "syncwire.v1.SyncService", ""):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
            reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for answer in reflect.ServerReflectionInfo(iter([request])):
                names = {s.name for s in answer.list_services_response.service}
                break
    assert {TEST_SERVICE, "syncwire.v1.SyncService", "grpc.health.v1.Health"} <= names


async def _undecodable(channel: grpc.aio.Channel, method: str) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary(method, **RAW)(b"\xff\xff", timeout=20)
    return info.value.code(), info.value.details() or ""


async def test_undecodable_requests_sync_service_is_lenient_applications_are_grpc_aio() -> None:
    async with app_server() as server:
        results = {}
        for channel in _channels(server):
            async with channel:
                results[type(channel).__name__] = (
                    await _undecodable(channel, f"/{TEST_SERVICE}/UnaryCall"),
                    await _undecodable(channel, "/syncwire.v1.SyncService/Publish"),
                )
    native = results.pop("Channel")
    assert results == {"WebSocketChannel": native}
    (app_code, app_details), (sync_code, _) = native
    assert app_code is grpc.StatusCode.UNKNOWN
    assert app_details.startswith("Unexpected <class 'google.protobuf.message.DecodeError'>: ")
    assert sync_code is grpc.StatusCode.INVALID_ARGUMENT


async def test_services_option_serves_an_application_service_from_the_command_line() -> None:
    process = await start_server_process(
        "--services", "tests.interop.servicer:register_interop_service"
    )
    try:
        for channel in (
            grpc.aio.insecure_channel(process.grpc_address),
            WebSocketChannel(process.ws_url),
        ):
            async with channel:
                stub = test_pb2_grpc.TestServiceStub(channel)
                assert await stub.EmptyCall(empty_pb2.Empty(), timeout=20) == empty_pb2.Empty()
        assert await process.terminate() == 0
    finally:
        process.kill()


async def test_services_option_that_does_not_load_is_a_usage_error() -> None:
    finished = await run_python(
        *("-m", "server", "--grpc-port", "0", "--ws-port", "0"),
        *("--services", "tests.interop.servicer:no_such_function"),
    )
    assert finished.returncode == 2
    assert "services: 'tests.interop.servicer' has no function 'no_such_function'" in (
        finished.stderr
    )


async def test_websocket_adapter_stands_alone_without_the_sync_application() -> None:
    # server/ws/ is the generic adapter: importing it loads none of the sync service
    # (config, auth, rate limits, brokers, syncwire.v1); tests/interop/server.py builds a
    # WebSocketServer with only the interop TestService on it.
    finished = await run_python(
        "-c", "import sys, server.ws; print(' '.join(sorted(sys.modules)))"
    )
    loaded = finished.stdout.split()
    ours = {m for m in loaded if m.split(".")[0] in ("server", "client", "syncwire")}
    allowed = {"server", "server.broadcast_cache", "syncwire", "syncwire.ws", "syncwire.ws.v1"}
    assert {m for m in ours if not m.startswith("server.ws")} - allowed == {
        "syncwire.ws.v1.frame_pb2"
    }
