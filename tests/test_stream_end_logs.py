"""Every way the server ends a Sync stream, over native gRPC and over WebSocket (slow
consumer, token expiry, idle timeout, drain), is a normal termination: the client gets its status, and the server
logs no error and no traceback for it (its request reader, blocked on the aborted call,
ends quietly). Asserted on the log records captured while the server runs and stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import grpc.aio
import pytest

from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

from .clock_harness import AUDIENCE, ManualClock, server_on_clock
from .security_harness import bearer, make_token
from .service_harness import SyncStream, open_channel, running_server

pytestmark = pytest.mark.timeout(60)

STREAMS = 4
"""Streams ended at once: each is one more chance for the abort to race its reader."""

TIMEOUT = 20.0


def _faults(records: list[logging.LogRecord]) -> list[str]:
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.ERROR or r.exc_info is not None
    ]


async def _ended(stream: SyncStream) -> grpc.aio.AioRpcError:
    error = await asyncio.wait_for(stream.ended, TIMEOUT)
    assert error is not None
    return error


async def slow_consumer(transport: str) -> None:
    async with running_server(subscriber_queue=16) as server:
        async with open_channel(server, transport) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            calls = []
            for _ in range(STREAMS):
                requests: asyncio.Queue[sync_pb2.SyncRequest] = asyncio.Queue()

                async def never_ending(
                    queue: asyncio.Queue[sync_pb2.SyncRequest] = requests,
                ) -> AsyncIterator[sync_pb2.SyncRequest]:
                    while True:
                        yield await queue.get()

                call = stub.Sync(never_ending())
                requests.put_nowait(
                    sync_pb2.SyncRequest(
                        request_id=1, subscribe=sync_pb2.Subscribe(collection_id="hot")
                    )
                )
                async for response in call:  # then never read again
                    if response.HasField("subscribed"):
                        break
                calls.append(call)
            payload = b"p" * 16384
            while len(server.core.registry) > 0:
                await stub.Publish(
                    sync_pb2.PublishRequest(
                        delta=types_pb2.Delta(collection_id="hot", delta=payload)
                    )
                )
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    async for _ in call:
                        pass
                assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def token_expiry(transport: str) -> None:
    clock = ManualClock()
    async with server_on_clock(clock) as server:
        async with open_channel(server, transport) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            token = make_token(aud=AUDIENCE, exp=int(clock.time() + 60))
            streams = [SyncStream(stub, metadata=bearer(token)) for _ in range(STREAMS)]
            for stream in streams:
                await stream.welcome()
            clock.advance(61)
            for stream in streams:
                assert (await _ended(stream)).code() == grpc.StatusCode.UNAUTHENTICATED


async def idle_timeout(transport: str) -> None:
    async with running_server(idle_timeout=0.5, heartbeat_interval=0.2) as server:
        async with open_channel(server, transport) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            streams = [SyncStream(stub) for _ in range(STREAMS)]
            for stream in streams:
                await stream.welcome()
            for stream in streams:
                assert (await _ended(stream)).code() == grpc.StatusCode.UNAVAILABLE


async def drain(transport: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(running_server())
        channel = await stack.enter_async_context(open_channel(server, transport))
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        streams = [SyncStream(stub) for _ in range(STREAMS)]
        for stream in streams:
            await stream.welcome()
        await server.stop(grace=1.0)
        for stream in streams:
            assert (await _ended(stream)).code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("transport", ["grpc", "ws"])
@pytest.mark.parametrize(
    "end", [slow_consumer, token_expiry, idle_timeout, drain], ids=lambda f: f.__name__
)
async def test_a_server_ended_stream_logs_no_error(
    end: Callable[[str], Awaitable[None]], transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await end(transport)
    assert _faults(caplog.records) == []
