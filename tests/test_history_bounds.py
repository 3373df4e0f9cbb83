"""GetHistory answers stay within what a client can receive: a retained history larger
than one message (17 deltas of about 1 MiB each, past gRPC's default 4 MiB receive
limit) comes back in byte-bounded slices, and SyncClient.history pages through them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from client import DeltaEvent, Endpoint, SyncClient
from server.app import SyncwireServer
from server.config import MIB
from syncwire.v1 import sync_pb2, sync_pb2_grpc

from .service_harness import open_channel, running_server

pytestmark = pytest.mark.timeout(60)

DELTAS = 17
PAYLOAD = MIB - 1024  # one publish fits the default 1 MiB message limit
COLLECTION = "edge"


def payload(index: int) -> bytes:
    return bytes([index]) * PAYLOAD


@pytest.fixture
async def server() -> AsyncIterator[SyncwireServer]:
    """One server (default limits) holding 17 x ~1 MiB deltas in COLLECTION."""
    async with running_server() as running:
        async with SyncClient(Endpoint.parse(f"grpc://{running.grpc_address}")) as client:
            for index in range(1, DELTAS + 1):
                assert (await client.publish(COLLECTION, payload(index))).offset == index
        yield running


def endpoint_of(server: SyncwireServer, transport: str) -> Endpoint:
    if transport == "grpc":
        return Endpoint.parse(f"grpc://{server.grpc_address}")
    return Endpoint.parse(server.ws_url)


@pytest.mark.parametrize("transport", ["grpc", "websocket"])
async def test_history_pages_through_a_history_larger_than_a_message(
    server: SyncwireServer, transport: str
) -> None:
    async with SyncClient(endpoint_of(server, transport)) as client:
        history = await client.history(COLLECTION)
        assert [delta.offset for delta in history.deltas] == list(range(1, DELTAS + 1))
        assert all(delta.delta == payload(delta.offset) for delta in history.deltas)
        assert history.offset == DELTAS and not history.truncated
        assert history.recovery == sync_pb2.RECOVERY_STATUS_RECOVERED
        assert history.oldest_offset == 1
        # A limit is still the most that comes back, across pages too.
        limited = await client.history(COLLECTION, since_offset=2, limit=6)
        assert [delta.offset for delta in limited.deltas] == list(range(3, 9))
        assert not limited.truncated


@pytest.mark.parametrize("transport", ["grpc", "ws"])
async def test_raw_get_history_returns_bounded_slices_to_continue_from(
    server: SyncwireServer, transport: str
) -> None:
    channel = open_channel(server, transport)
    async with channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        since, offsets, slices = 0, [], 0
        while True:
            response = await stub.GetHistory(
                sync_pb2.GetHistoryRequest(collection_id=COLLECTION, since_offset=since),
                timeout=20,
            )
            slices += 1
            assert response.ByteSize() <= server.config.max_message_bytes
            assert response.deltas, "a slice holds at least one delta when any is due"
            assert response.offset == DELTAS
            assert response.recovery == sync_pb2.RECOVERY_STATUS_RECOVERED
            offsets += [delta.offset for delta in response.deltas]
            since = response.deltas[-1].offset
            if since == response.offset:
                assert not response.truncated
                break
            assert response.truncated and slices < DELTAS
        assert offsets == list(range(1, DELTAS + 1))
        assert slices > 1


@pytest.mark.parametrize("transport", ["grpc", "websocket"])
async def test_subscribe_replays_a_history_larger_than_a_message(
    server: SyncwireServer, transport: str
) -> None:
    """The Subscribe replay sends one message per delta, so it was never bounded by the
    whole history's size; kept here beside GetHistory so the two stay alike."""
    async with SyncClient(endpoint_of(server, transport)) as client:
        offsets: list[int] = []
        events = client.events()
        await client.subscribe(COLLECTION, last_offset=0)
        async with asyncio.timeout(30):
            async for event in events:
                if isinstance(event, DeltaEvent):
                    assert event.delta.delta == payload(event.delta.offset)
                    offsets.append(event.delta.offset)
                    if len(offsets) == DELTAS:
                        break
        assert offsets == list(range(1, DELTAS + 1))
