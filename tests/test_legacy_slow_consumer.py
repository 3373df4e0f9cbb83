"""A legacy client that stops reading is dropped promptly, and others carry on."""

from __future__ import annotations

import grpc
import pytest
from websockets.asyncio.client import connect

from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

from .service_harness import SyncStream, running_server

pytestmark = pytest.mark.timeout(30)


async def test_stalled_legacy_reader_is_dropped_and_announced() -> None:
    async with running_server(subscriber_queue=16) as server:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            watcher = SyncStream(stub)
            await watcher.welcome()
            await watcher.subscribe("default")
            # A legacy client that reads its welcome, then never reads again; its
            # library buffers at most one message, so the server's sends back up.
            stalled = await connect(server.ws_url, max_queue=1, compression=None)
            await stalled.recv()
            join = await watcher.expect("peer_join")
            stalled_peer = join.peer_join.peer_id
            big = b"\x07" * 256 * 1024  # relayed to legacy peers as a ~1 MiB JSON byte array
            for _ in range(64):
                await stub.Publish(
                    sync_pb2.PublishRequest(
                        delta=types_pb2.Delta(collection_id="default", delta=big)
                    )
                )
            leave = await watcher.expect(
                "peer_leave", lambda r: r.peer_leave.peer_id == stalled_peer
            )
            assert leave.peer_leave.reason
            got = [await watcher.expect("delta") for _ in range(64)]
            assert [r.delta.offset for r in got] == list(range(1, 65))
            assert all(s.peer_id != stalled_peer for s in server.core.registry.sessions())
            await watcher.close()
            stalled.transport.abort()  # it never reads: no close handshake to wait for
