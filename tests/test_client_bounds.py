"""The client's buffers are bounded (issue 13, item 7): the event buffer by events and
bytes, presence events included, and each connection's send buffer by bytes."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from client import (
    ClientConfig,
    DeltaEvent,
    ErrorEvent,
    RequestFailed,
    SendBufferFullError,
    SyncClient,
)

from .client_harness import FAST
from .service_harness import poll_until, running_server
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)


def _config(**overrides: object) -> ClientConfig:
    return dataclasses.replace(FAST, outbox_path=None, **overrides)  # type: ignore[arg-type]


async def test_presence_events_respect_the_event_buffer() -> None:
    async with running_server() as server:
        client = SyncClient(f"grpc://{server.grpc_address}", _config(event_buffer=16))
        async with client:
            await client.connect()
            await client.subscribe("room")
            for i in range(200):  # presence churn the application does not read
                await server.core.broker.presence_join("room", f"peer-{i}", None)
            await poll_until(
                lambda: getattr(client.stats, "presence_dropped", 0) > 0, "presence dropped"
            )
            assert len(client._inbox) <= 16
            # Reading again: the loss is reported once, naming the collection.
            reported: ErrorEvent | None = None
            async with asyncio.timeout(10):
                async for event in client.events():
                    if isinstance(event, ErrorEvent):
                        reported = event
                        break
            assert reported is not None
            event = reported
            assert isinstance(event.error, RequestFailed)
            assert event.error.reason_code == "presence_events_dropped"
            assert event.error.collection_id == "room"
            assert event.request == "presence"


async def test_deltas_respect_the_event_buffer_bytes() -> None:
    async with running_server() as server:
        config = _config(event_buffer=10_000, event_buffer_bytes=64 * 1024)
        client = SyncClient(f"grpc://{server.grpc_address}", config)
        async with client:
            await client.connect()
            await client.subscribe("big")
            payload = b"b" * 8192
            for _ in range(100):  # 800 KiB: far fewer events than the count bound
                await client.publish("big", payload)
            await poll_until(lambda: client.stats.pauses > 0, "subscription paused")
            offsets = []
            async with asyncio.timeout(20):
                async for event in client.events():
                    if isinstance(event, DeltaEvent):
                        offsets.append(event.offset)
                        if len(offsets) == 100:
                            break
            assert offsets == list(range(1, 101))  # the rejoin replayed what was skipped


async def test_send_buffer_is_bounded_when_the_server_stops_reading() -> None:
    async with running_server() as server:
        async with TcpProxy("127.0.0.1", server.grpc_port) as proxy:
            config = _config(send_buffer_bytes=256 * 1024, max_in_flight=128)
            client = SyncClient(f"grpc://{proxy.address}", config)
            async with client:
                await client.connect()
                await client.subscribe("stuck")
                proxy.freeze()
                payload = bytes(range(256)) * 256  # 64 KiB
                # Collections of their own: a collection has one publish in flight at a time.
                pending = [client.submit(f"stuck{i}", payload) for i in range(128)]
                # The outbox pump fills the send buffer, then waits for room.
                await poll_until(
                    lambda: client._link is not None
                    and getattr(client._link, "_queued_bytes", 0) >= 128 * 1024,
                    "send buffer filled",
                )
                link = client._link
                assert link is not None
                with pytest.raises(SendBufferFullError) as raised:
                    await client.send_blob(payload * 2)
                assert raised.value.reason_code == "send_buffer_full"
                assert link._queued_bytes <= 256 * 1024
                proxy.cut()  # the client reconnects through the proxy and flushes
                await asyncio.wait_for(asyncio.gather(*(p.wait() for p in pending)), 30)
