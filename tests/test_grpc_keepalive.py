"""The gRPC listener tolerates client keepalive pings every 5 s, as documented.

grpc core ignores channel arguments it does not know, so a misspelled server option
leaves its default policy (one ping per 5 minutes without data) in force: a client
pinging every 5-10 s on a quiet stream then gets GOAWAY ``too_many_pings`` after three
pings and its streams fail UNAVAILABLE "Too many pings", about 30 s after they opened.
This test keeps a quiet Sync stream open over real gRPC with 5 s keepalive pings for
longer than that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from client.endpoints import ChannelSettings
from syncwire.v1 import sync_pb2, sync_pb2_grpc

from .service_harness import running_server

# Old servers failed the stream after ~15-30 s (three strikes, each a ping earlier than
# the 5 minute default allows); this window covers that with room to spare.
QUIET_SECONDS = 40.0

pytestmark = pytest.mark.timeout(QUIET_SECONDS + 40)


async def test_quiet_stream_with_5_s_keepalive_pings_is_not_cut_off() -> None:
    # A long heartbeat: no server data on the stream, so nothing resets ping strikes.
    async with running_server(heartbeat_interval=300.0, idle_timeout=600.0) as server:
        options = ChannelSettings(keepalive_time=5.0).grpc_options()
        assert ("grpc.keepalive_time_ms", 5_000) in options  # the fastest a client pings
        async with grpc.aio.insecure_channel(server.grpc_address, options=options) as channel:
            idle = asyncio.Event()

            async def requests() -> AsyncIterator[sync_pb2.SyncRequest]:
                await idle.wait()  # send nothing, keep the request side open
                yield sync_pb2.SyncRequest()

            call = sync_pb2_grpc.SyncServiceStub(channel).Sync(requests())
            first = await asyncio.wait_for(call.read(), 10)
            assert isinstance(first, sync_pb2.SyncResponse) and first.HasField("welcome")
            # The stream must outlive several keepalive intervals: a GOAWAY
            # too_many_pings would end it UNAVAILABLE "Too many pings" here.
            with pytest.raises(TimeoutError):
                ended = await asyncio.wait_for(call.read(), QUIET_SECONDS)
                pytest.fail(f"the quiet stream ended: {ended!r} {await call.code()}")
            # Giving up the read cancelled the call locally; nothing ended it before.
            assert await call.code() == grpc.StatusCode.CANCELLED
            idle.set()
