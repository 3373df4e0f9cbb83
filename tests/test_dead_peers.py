"""A peer detected dead is released at once, without waiting for a close handshake.

Whatever detects it (WebSocket ping timeout, heartbeat silence), its session, presence
and connection slot go at once, on every transport (issue 13, item 4). The tests set the
WebSocket closing handshake's timeout far beyond their own time bound, so a departure
that waits for the handshake cannot pass, and freeze the peer with a proxy that stops
reading and forwarding (no FIN, no RST): the server's writes to it pile up unanswered.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import grpc
import pytest

from client.ws_channel import WebSocketChannel
from server.app import SyncwireServer
from syncwire.v1 import sync_pb2_grpc, types_pb2

from .legacy_ws_client import LegacyClient
from .service_harness import SyncStream, poll_until, running_server
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(40)

CLOSE_TIMEOUT = 60.0
"""The closing handshake's timeout: longer than any test here may take."""

HOME = "default"
"""The legacy clients' home collection, where every peer here joins presence."""


@contextlib.asynccontextmanager
async def frozen_peer(
    transport: str, **overrides: object
) -> AsyncIterator[tuple[SyncwireServer, str]]:
    """A server with a long closing-handshake timeout and one peer (legacy, typed
    WebSocket or gRPC, present in HOME) behind a proxy, frozen before this yields."""
    async with running_server(ws_close_timeout=CLOSE_TIMEOUT, **overrides) as server:
        port = server.grpc_port if transport == "grpc" else server.ws_port
        async with TcpProxy("127.0.0.1", port) as proxy:
            url = f"ws://{proxy.address}"
            async with contextlib.AsyncExitStack() as stack:
                if transport == "legacy":
                    peer_id = (await LegacyClient.open(url)).peer_id
                else:
                    channel: grpc.aio.Channel = (
                        grpc.aio.insecure_channel(proxy.address)
                        if transport == "grpc"
                        else WebSocketChannel(url)
                    )
                    stack.push_async_callback(channel.close, None)
                    stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
                    peer_id = (await stream.welcome()).peer_id
                    await stream.subscribe(HOME, join_presence=True)
                assert peer_id in await _present(server)
                assert proxy.freeze() == 1
                yield server, peer_id
                proxy.cut()


async def _present(server: SyncwireServer) -> set[str]:
    return {member.peer_id for member in await server.core.broker.presence_members(HOME)}


async def _released(server: SyncwireServer, peer_id: str) -> None:
    await poll_until(lambda: len(server.core.registry) == 0, "session and slot released")
    assert peer_id not in await _present(server)


@pytest.mark.parametrize("transport", ["legacy", "ws"])
async def test_ping_timeout_releases_a_frozen_peer_at_once(transport: str) -> None:
    async with frozen_peer(transport, ws_ping_interval=0.5, ws_ping_timeout=0.5) as (
        server,
        peer_id,
    ):
        await _released(server, peer_id)
        await poll_until(lambda: server.ws_server.open_connections == 0, "socket dropped")


@pytest.mark.parametrize("transport", ["legacy", "ws", "grpc"])
async def test_heartbeat_silence_releases_a_peer_stuck_in_a_write(transport: str) -> None:
    # No WebSocket pings: only the session's idle timeout notices the silence, while the
    # server's writes to the peer are stuck on its full socket.
    async with frozen_peer(
        transport,
        ws_ping_interval=0,
        idle_timeout=2.0,
        subscriber_queue_bytes=256 * 1024 * 1024,
    ) as (server, peer_id):
        payload = os.urandom(65536)  # incompressible: permessage-deflate cannot shrink it
        for _ in range(256):  # 16 MiB: more than socket buffers and framing windows hold
            await server.core.publish(
                types_pb2.Delta(collection_id=HOME, delta=payload), principal=None
            )
        await _released(server, peer_id)
        if transport == "legacy":  # its socket too: no closing handshake with a dead peer
            await poll_until(lambda: server.ws_server.open_connections == 0, "socket dropped")
