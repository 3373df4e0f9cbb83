"""A subscription outlives a rejoin that the server refuses for now.

After a reconnect the client rejoins each subscription from its offset. When the node
answers that rejoin with a retryable refusal (UNAVAILABLE `broker_unavailable`: the
node's Redis is away, e.g. mid-failover), the subscription must stay and be rejoined
once the broker answers again; dropping it leaves a connected client that silently
receives nothing more of the collection (issue 13: no gap is ever silent).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from client import DeltaEvent, ErrorEvent, RecoveryEvent, SyncClient
from server.event_queue import SessionEnd

from .client_harness import FAST
from .redis_harness import private_redis
from .service_harness import poll_until, running_server

pytestmark = pytest.mark.timeout(60)


async def test_a_rejoin_refused_while_the_broker_is_away_is_retried(tmp_path: Path) -> None:
    with private_redis(tmp_path) as redis_server:
        async with running_server(broker=redis_server.url(), broker_timeout=2.0) as server:
            broker = server.core.broker
            async with SyncClient(f"grpc://{server.grpc_address}", FAST) as tail, SyncClient(
                f"grpc://{server.grpc_address}", FAST
            ) as publisher:
                await tail.subscribe("doc")
                events = tail.events()
                first = await publisher.publish("doc", b"before")

                async def next_of_doc() -> object:
                    async with asyncio.timeout(30):
                        async for event in events:
                            if isinstance(event, DeltaEvent | RecoveryEvent | ErrorEvent):
                                return event
                    raise AssertionError("the event stream ended")

                got = await next_of_doc()
                assert isinstance(got, DeltaEvent) and got.data == b"before"

                redis_server.kill()
                await broker.wait_connected(False)  # type: ignore[attr-defined]
                connections = tail.stats.connections
                for session in server.core.registry.sessions():
                    if session.peer_id == tail.peer_id:  # the tail reconnects and rejoins
                        session.end(SessionEnd(grpc.StatusCode.UNAVAILABLE, "test", reconnect=True))
                # The rejoin is refused (broker_unavailable) while Redis is away.
                await poll_until(
                    lambda: tail.stats.connections > connections, "the tail reconnected"
                )
                redis_server.start()
                await broker.wait_connected(True)  # type: ignore[attr-defined]
                after = await publisher.publish("doc", b"after")
                assert after.epoch != first.epoch  # a new Redis process: a new epoch

                # The subscription is still there: the loss is reported, then live deltas.
                assert tail.stats.rejoins_retried >= 1
                got = await next_of_doc()
                assert isinstance(got, RecoveryEvent), got
                assert got.epoch == after.epoch and got.previous_epoch == first.epoch
                while not (isinstance(got, DeltaEvent) and got.data == b"after"):
                    got = await next_of_doc()
                    assert isinstance(got, DeltaEvent), got
