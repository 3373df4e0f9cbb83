"""Long catch-ups: a replay flows under the same flow control as live traffic.

A client that subscribes with an old offset and reads as fast as it can must receive the
whole replay and the live deltas that follow, in offset order, once each, without being
judged a slow consumer for a backlog the server queued itself (issue 13, item 3).
"""

from __future__ import annotations

import asyncio

import pytest

from server.app import SyncwireServer
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

from .redis_harness import redis_base_url, redis_url  # noqa: F401  (fixtures)
from .service_harness import TRANSPORTS, SyncStream, open_channel, running_server

pytestmark = pytest.mark.timeout(90)

_PAYLOAD = b"h" * 256
"""Large enough that a replay outgrows every transport buffer (socket, framing window)."""


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["memory", "redis"])
def broker(request: pytest.FixtureRequest) -> str:
    """The broker URL: the embedded memory broker or a real redis-server."""
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_url"))


async def _fill(server: SyncwireServer, collection_id: str, count: int) -> None:
    """Publishes `count` deltas straight into the core (history to catch up on)."""
    for i in range(count):
        await server.core.publish(
            types_pb2.Delta(collection_id=collection_id, delta=_PAYLOAD + f"{i}".encode()),
            principal=None,
        )


async def _deltas(stream: SyncStream, collection_id: str, count: int) -> list[int]:
    got = []
    for _ in range(count):
        response = await stream.expect(
            "delta", lambda r: r.delta.collection_id == collection_id
        )
        got.append(response.delta.offset)
    return got


@pytest.mark.parametrize("live", ["none", "heartbeat", "publish"])
async def test_a_reader_that_keeps_up_finishes_a_long_catch_up_in_one_go(
    transport: str, live: str, broker: str
) -> None:
    async with running_server(subscriber_queue=100, history_size=5000, broker=broker) as server:
        await _fill(server, "long", 3000)
        async with open_channel(server, transport) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            reader = SyncStream(stub)  # reads continuously into its inbox
            await reader.welcome()
            subscribed = await reader.subscribe("long", last_offset=0)
            assert subscribed.recovery == sync_pb2.RECOVERY_STATUS_RECOVERED
            assert subscribed.replayed == 3000
            # The replay has only begun: live traffic now must not find the session "full".
            expected = list(range(1, 3001))
            if live == "heartbeat":
                server.core.send_heartbeats()
            elif live == "publish":
                await _fill(server, "long", 1)
                expected.append(3001)
            got = await _deltas(reader, "long", len(expected))
            assert got == expected
            if live == "heartbeat":
                await reader.expect("heartbeat")
            # Still connected and live: one more delta arrives exactly once.
            await _fill(server, "long", 1)
            assert await _deltas(reader, "long", 1) == [len(expected) + 1]
            assert not reader.ended.done()
            assert len(server.core.registry) == 1
            await reader.close()


async def test_rejoining_a_dozen_busy_collections_with_defaults(transport: str) -> None:
    collections = [f"busy-{i}" for i in range(12)]
    async with running_server() as server:
        history = server.config.history_size
        for collection_id in collections:
            await _fill(server, collection_id, history)
        async with open_channel(server, transport) as channel:
            reader = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
            await reader.welcome()
            request_ids = [
                reader.send(
                    subscribe=sync_pb2.Subscribe(collection_id=collection_id, last_offset=0)
                )
                for collection_id in collections
            ]
            # Busy: each collection moves on as soon as the client is back in it.
            for request_id, collection_id in zip(request_ids, collections, strict=True):
                reply = await reader.expect_reply(request_id)
                assert reply.subscribed.replayed == history, reply
                await _fill(server, collection_id, 1)
            for collection_id in collections:
                assert await _deltas(reader, collection_id, history + 1) == list(
                    range(1, history + 2)
                )
            assert not reader.ended.done()
            await reader.close()


async def test_sync_client_rejoins_a_dozen_busy_collections_in_one_go() -> None:
    import dataclasses

    from client import DeltaEvent, RecoveryEvent, SyncClient

    from .client_harness import FAST
    from .tcp_proxy import TcpProxy

    collections = [f"busy-{i}" for i in range(12)]
    async with running_server() as server:
        history = server.config.history_size
        async with TcpProxy("127.0.0.1", server.grpc_port) as proxy:
            config = dataclasses.replace(FAST, outbox_path=None)
            async with SyncClient(f"grpc://{proxy.address}", config) as client:
                await client.connect()
                for collection_id in collections:
                    await client.subscribe(collection_id)
                await proxy.refuse()  # an outage: the client cannot reconnect meanwhile
                for collection_id in collections:
                    await _fill(server, collection_id, history)
                await proxy.start()
                offsets: dict[str, list[int]] = {c: [] for c in collections}
                recovered = set()
                async with asyncio.timeout(60):
                    async for event in client.events():  # the application keeps up
                        if isinstance(event, RecoveryEvent):
                            assert not event.recovery.lost_deltas, event
                            recovered.add(event.collection_id)
                        elif isinstance(event, DeltaEvent):
                            offsets[event.collection_id].append(event.offset)
                            if sum(map(len, offsets.values())) == 12 * history:
                                break
                assert recovered == set(collections)
                assert all(got == list(range(1, history + 1)) for got in offsets.values())
                assert client.stats.pauses == 0  # one rejoin each, no churn
                assert client.stats.connections == 2
