"""The Redis broker over Sentinel: two nodes, a master SIGKILLed mid-stream.

Sentinel promotes the replica; each node follows it by itself (redis-py's Sentinel
support asks the sentinels for the master on every new connection); subscriptions and
presence come back, publishes resume; deltas the replica never received are reported
as an epoch change (the new Redis process starts new epochs), never a silent gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from client import Recovery, SyncClient

from .fault_harness import (
    IDLE_TIMEOUT,
    PATIENT,
    Publisher,
    Tail,
    check_delivery,
    close_tails,
    open_tail,
    presence_is,
    server_nodes,
    wait_delivered,
    wait_until,
)
from .process_harness import ServerProcess
from .redis_topology import SentinelSet, sentinel_set

pytestmark = [pytest.mark.timeout(120), pytest.mark.heavy]



@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with sentinel_set(tmp_path) as topology:
        yield topology


@pytest.fixture
async def nodes(sentinels: SentinelSet) -> AsyncIterator[list[ServerProcess]]:
    async with server_nodes(sentinels.url("sentinel")) as started:
        yield started


async def test_master_killed_mid_stream_fails_over_without_a_silent_gap(
    sentinels: SentinelSet, nodes: list[ServerProcess]
) -> None:
    first, second = (f"grpc://{node.grpc_address}" for node in nodes)
    tails: list[Tail] = []
    publisher = Publisher(SyncClient(second, PATIENT), "doc")
    try:
        tails = [await open_tail(first, "doc"), await open_tail(second, "doc")]
        await publisher.client.connect()
        await publisher.publish(20, "before")

        done = asyncio.Event()
        stream = asyncio.create_task(publisher.publish_until(done, "during"))
        await publisher.publish(0)
        before_kill = len(publisher.acked)
        old_master = sentinels.master.port
        sentinels.master.kill()  # SIGKILL: acknowledged writes may not have replicated
        await wait_until(
            lambda: sentinels.master_port() != old_master, "sentinel promoted the replica", 30
        )
        # Publishes resume through the promoted replica.
        await wait_until(
            lambda: len(publisher.acked) > before_kill + 5, "publishes resumed", 30
        )
        done.set()
        await stream
        await publisher.publish(10, "after")
        await wait_delivered(tails, publisher.acked)
        for tail in tails:
            check_delivery(tail, publisher.acked)
        # A new Redis process is a new epoch for every collection: always reported.
        for tail in tails:
            assert any(r.recovery == Recovery.EPOCH_MISMATCH for r in tail.recoveries)
        after = publisher.acked[-10:]
        assert len({ack.epoch for ack in after}) == 1
        assert after[0].epoch != publisher.acked[0].epoch
        for tail in tails:
            assert [e.data for e in tail.deltas[-10:]] == [ack.payload for ack in after]

        alive = {tail.client.peer_id for tail in tails}
        took = await wait_until(
            lambda: presence_is(publisher.client, "doc", alive), "presence restored", 10
        )
        assert took < IDLE_TIMEOUT + 3.0
    finally:
        await close_tails(tails)
        await publisher.client.close(flush_timeout=0)
