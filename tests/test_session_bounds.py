"""Every per-session buffer on the server is bounded (issue 13, item 7).

Direct replies to a client that never reads stop its requests from being read, live
events are bounded in messages and in bytes, and one session holds a bounded number of
subscriptions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from server.app import SyncwireServer
from server.session import Session
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

from .service_harness import TRANSPORTS, SyncStream, open_channel, poll_until, running_server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def only_session(server: SyncwireServer) -> Session:
    sessions = server.core.registry.sessions()
    assert len(sessions) == 1, sessions
    return sessions[0]


def _small_window_channel(server: SyncwireServer, transport: str) -> grpc.aio.Channel:
    """A channel whose receive window cannot grow past its first 64 KiB: gRPC's BDP
    probing would otherwise let the client buffer every unread reply (megabytes), so
    nothing would ever wait in the server's queue."""
    if transport == "grpc":
        return grpc.aio.insecure_channel(
            server.grpc_address, options=[("grpc.http2.bdp_probe", 0)]
        )
    return open_channel(server, transport)


async def test_unread_replies_stop_the_requests_being_read(transport: str) -> None:
    limit = 16
    count = 20000
    async with running_server(subscriber_queue=limit) as server:
        async with _small_window_channel(server, transport) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            requests: asyncio.Queue[sync_pb2.SyncRequest] = asyncio.Queue()
            for request_id in range(1, count + 1):
                requests.put_nowait(
                    sync_pb2.SyncRequest(request_id=request_id, blob=sync_pb2.Blob(data=b"b"))
                )

            async def send() -> AsyncIterator[sync_pb2.SyncRequest]:
                while True:
                    yield await requests.get()

            call = stub.Sync(send())  # nothing reads the responses yet
            await poll_until(lambda: len(server.core.registry) == 1, "session opened")
            queue = only_session(server).queue
            # Either the server pauses reading at the bound, or (unbounded) its queue
            # outgrows it while the client's transport window is full.
            await poll_until(
                lambda: len(queue) > limit + 1 or getattr(queue, "replies_full", False),
                "replies pile up",
            )
            assert len(queue) <= limit + 1, f"{len(queue)} replies queued, bound {limit}"
            # Reading again: every reply arrives, in order, and the session carries on.
            acks = []
            async for response in call:
                if response.HasField("binary_ack"):
                    acks.append(response.request_id)
                    if len(acks) == count:
                        break
            assert acks == list(range(1, count + 1))
            assert len(server.core.registry) == 1
            call.cancel()


async def test_live_bytes_bound_ends_a_stuck_subscriber(transport: str) -> None:
    async with running_server(subscriber_queue=10000, subscriber_queue_bytes=256 * 1024) as server:
        async with open_channel(server, transport) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            requests: asyncio.Queue[sync_pb2.SyncRequest] = asyncio.Queue()
            requests.put_nowait(
                sync_pb2.SyncRequest(request_id=1, subscribe=sync_pb2.Subscribe(collection_id="big"))
            )

            async def send() -> AsyncIterator[sync_pb2.SyncRequest]:
                while True:
                    yield await requests.get()

            stuck = stub.Sync(send())
            async for response in stuck:
                if response.HasField("subscribed"):
                    break
            payload = b"p" * 32768
            # Far fewer messages than --subscriber-queue, far more bytes than the byte bound.
            for i in range(400):
                await server.core.publish(
                    types_pb2.Delta(collection_id="big", delta=payload + bytes([i % 256])),
                    principal=None,
                )
                if not server.core.registry.sessions():
                    break
            await poll_until(lambda: len(server.core.registry) == 0, "stuck session released")
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async for _ in stuck:
                    pass
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "slow consumer" in (raised.value.details() or "")
            assert "bytes" in (raised.value.details() or "")


async def test_subscriptions_per_session_are_capped(transport: str) -> None:
    async with running_server(max_subscriptions=3) as server:
        async with open_channel(server, transport) as channel:
            stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
            await stream.welcome()
            for i in range(3):
                await stream.subscribe(f"c{i}")
            request_id = stream.send(subscribe=sync_pb2.Subscribe(collection_id="c3"))
            refused = (await stream.expect_reply(request_id)).error
            assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            assert refused.reason_code == "too_many_subscriptions"
            assert refused.collection_id == "c3"
            assert "at most 3" in refused.message
            # The session carries on: after leaving one collection, another fits.
            request_id = stream.send(unsubscribe=sync_pb2.Unsubscribe(collection_id="c0"))
            assert (await stream.expect_reply(request_id)).HasField("unsubscribed")
            assert (await stream.subscribe("c3")).collection_id == "c3"
            assert sorted(only_session(server).subscriptions) == ["c1", "c2", "c3"]
            await stream.close()
