"""Issue 13, item 1: a subscriber joins history and live delivery with no gap and no
duplicate, on every broker, on one node and across nodes.

The Redis broker's pub/sub reader can lag behind a history read (a busy node, a slow
link); the tests make that lag deterministic by holding the node's pub/sub connection
in a TCP proxy, and publish inside the attach-then-read window through the brokers'
`join_pause` hook.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest

from server.app import SyncwireServer
from syncwire.v1 import sync_pb2_grpc

from .redis_harness import redis_base_url, redis_url  # noqa: F401  (fixtures)
from .service_harness import SyncStream, running_server
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

SETUPS = ["memory", "redis-one-node", "redis-two-nodes"]


def through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=proxy.address))


@contextlib.asynccontextmanager
async def connected_server(broker: str) -> AsyncIterator[SyncwireServer]:
    """A server whose broker is connected (a busy machine may take longer than the
    server's start waits for Redis)."""
    async with running_server(broker=broker) as server:
        async with asyncio.timeout(30):
            await server.core.broker.wait_healthy(True)
        yield server


@contextlib.asynccontextmanager
async def stream(server: SyncwireServer) -> AsyncIterator[SyncStream]:
    channel = grpc.aio.insecure_channel(server.grpc_address)
    client = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
    await client.welcome()
    try:
        yield client
    finally:
        await client.close()
        await channel.close(None)


def delta_offsets(client: SyncStream) -> list[int]:
    return [r.delta.offset for r in client.received if r.WhichOneof("kind") == "delta"]


@pytest.mark.parametrize("setup", SETUPS)
async def test_replay_and_live_join_without_gap_or_duplicate(
    setup: str, request: pytest.FixtureRequest
) -> None:
    url = "memory://" if setup == "memory" else str(request.getfixturevalue("redis_url"))
    async with contextlib.AsyncExitStack() as stack:
        proxy: TcpProxy | None = None
        if url != "memory://":
            target = urlsplit(url)
            assert target.hostname is not None and target.port is not None
            proxy = await stack.enter_async_context(TcpProxy(target.hostname, target.port))
        node = await stack.enter_async_context(
            connected_server(through(proxy, url) if proxy else url)
        )
        other = node
        if setup == "redis-two-nodes":
            other = await stack.enter_async_context(connected_server(url))
        watcher = await stack.enter_async_context(stream(node))
        publisher = await stack.enter_async_context(stream(other))
        joiner = await stack.enter_async_context(stream(node))
        await watcher.subscribe("doc")  # the node now follows "doc" live
        if proxy is not None:
            # The node's first Redis connection is its pub/sub reader: from now on its
            # live events lag behind everything else (nothing is lost, only late).
            proxy.hold(0)

        for i in range(3):
            await publisher.publish("doc", f"before {i}".encode())

        async def publish_in_the_window(collection_id: str) -> None:
            await publisher.publish(collection_id, b"inside the seam")

        node.core.broker.join_pause = publish_in_the_window
        subscribed = await joiner.subscribe("doc", last_offset=0)
        node.core.broker.join_pause = None
        assert (subscribed.offset, subscribed.replayed) == (4, 4)
        await publisher.publish("doc", b"after")
        if proxy is not None:
            proxy.release()
        last = await publisher.publish("doc", b"marker")
        await joiner.expect("delta", lambda r: r.delta.offset == last.offset)
        await watcher.expect("delta", lambda r: r.delta.offset == last.offset)
        assert delta_offsets(joiner) == [1, 2, 3, 4, 5, 6]
        assert delta_offsets(watcher) == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("setup", ["memory", "redis-two-nodes"])
async def test_staggered_subscribers_under_concurrent_publishing(
    setup: str, request: pytest.FixtureRequest
) -> None:
    """The issue's reproduction, bounded: subscribers join at staggered moments with
    last_offset 0 while deltas are published; each sees every offset exactly once."""
    url = "memory://" if setup == "memory" else str(request.getfixturevalue("redis_url"))
    total = 300
    async with contextlib.AsyncExitStack() as stack:
        node = await stack.enter_async_context(connected_server(url))
        other = node
        if setup == "redis-two-nodes":
            other = await stack.enter_async_context(connected_server(url))
        publisher = await stack.enter_async_context(stream(other))
        subscribers = [await stack.enter_async_context(stream(node)) for _ in range(6)]

        async def publish_all() -> None:
            for i in range(total):
                await publisher.publish("doc", f"{i}".encode())

        publishing = asyncio.create_task(publish_all())
        for subscriber in subscribers:  # one after the other, while publishing goes on
            await subscriber.subscribe("doc", last_offset=0)
        await publishing
        for subscriber in subscribers:
            await subscriber.expect("delta", lambda r: r.delta.offset == total)
            assert delta_offsets(subscriber) == list(range(1, total + 1))
