"""Hybrid mode: gRPC preferred, WebSocket as the fallback, and back to gRPC when it
returns; the application only sees state changes, never a lost or repeated delta."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from client import (
    ConnectionState,
    DeltaEvent,
    Recovery,
    RecoveryEvent,
    SwitchingEndpoint,
    SyncClient,
)
from server.app import SyncwireServer

from .client_harness import FAST, next_change, next_event
from .service_harness import running_server
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(30)

HYBRID = dataclasses.replace(FAST, probe_interval=0.2)


@pytest.fixture
async def server() -> AsyncIterator[SyncwireServer]:
    async with running_server(heartbeat_interval=1.0) as running:
        yield running


@pytest.fixture
async def grpc_proxy(server: SyncwireServer) -> AsyncIterator[TcpProxy]:
    async with TcpProxy("127.0.0.1", server.grpc_port) as proxy:
        yield proxy


def transport_of(client: SyncClient) -> str | None:
    return client.endpoint.transport if client.endpoint is not None else None


async def test_falls_back_to_websocket_and_returns_to_grpc(
    server: SyncwireServer, grpc_proxy: TcpProxy
) -> None:
    await grpc_proxy.refuse()  # the gRPC port is unreachable
    endpoints = [f"grpc://{grpc_proxy.address}", server.ws_url]
    async with (
        SyncClient(endpoints, HYBRID) as client,
        SyncClient(f"grpc://{server.grpc_address}") as publisher,
    ):
        await asyncio.wait_for(client.connect(), 5)
        assert transport_of(client) == "websocket"
        sub = await client.subscribe("doc")
        await publisher.publish("doc", b"over websocket")
        assert (await next_event(client, DeltaEvent)).data == b"over websocket"

        switching = asyncio.create_task(next_change(client, ConnectionState.RECONNECTING))
        back = asyncio.create_task(next_change(client, ConnectionState.CONNECTED))
        await grpc_proxy.start()  # gRPC is back
        change = await asyncio.wait_for(switching, 5)
        assert isinstance(change.error, SwitchingEndpoint)
        assert (await asyncio.wait_for(back, 5)).transport == "grpc"
        assert transport_of(client) == "grpc"
        assert grpc_proxy.open_connections >= 1  # really through the gRPC port
        rejoined = await next_event(client, RecoveryEvent)
        assert rejoined.recovery is Recovery.RECOVERED

        await publisher.publish("doc", b"over grpc")
        delta = await next_event(client, DeltaEvent)
        assert (delta.offset, delta.data) == (2, b"over grpc")

        fallback = asyncio.create_task(next_change(client, ConnectionState.CONNECTED))
        await grpc_proxy.refuse()  # gRPC fails again: WebSocket takes over
        await publisher.publish("doc", b"during the switch")
        assert (await asyncio.wait_for(fallback, 5)).transport == "websocket"
        delta = await next_event(client, DeltaEvent)
        assert (delta.offset, delta.data) == (3, b"during the switch")
        assert sub.offset == 3 and client.stats.duplicates_dropped == 0
        assert client.stats.deltas == 3
