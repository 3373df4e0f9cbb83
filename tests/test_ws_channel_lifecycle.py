"""A WebSocket channel whose connection drops leaves no background task behind."""

from __future__ import annotations

import asyncio

import pytest

from client.ws_channel import WebSocketChannel
from syncwire.v1 import sync_pb2, sync_pb2_grpc

from .service_harness import running_server

pytestmark = pytest.mark.timeout(30)


def _channel_tasks() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("ws-client-") and not task.done()
    ]


async def test_dropped_connection_stops_reader_and_writer() -> None:
    async with running_server() as server:
        channel = WebSocketChannel(server.ws_url)
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        await stub.GetServerInfo(sync_pb2.GetServerInfoRequest())
        tasks = _channel_tasks()
        assert len(tasks) == 2
        for connection in server.ws_server.connections:
            await connection.shutdown(1011, "dropped by test")  # the server drops it
        _, pending = await asyncio.wait(tasks, timeout=5)
        assert pending == set(), [t.get_name() for t in pending]
        # The channel is still usable: the next call opens a new connection.
        await stub.GetServerInfo(sync_pb2.GetServerInfoRequest())
        await channel.close()
    for _ in range(100):
        if not _channel_tasks():
            break
        await asyncio.sleep(0.01)
    assert _channel_tasks() == []
