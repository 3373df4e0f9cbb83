"""The Redis broker on a real Redis Cluster (three masters, one replica each).

Collections spread over the masters (each one's keys and sharded pub/sub channel in one
slot); a live collection's slot is migrated to another master mid-stream, then the
master of another live collection is SIGKILLed so its replica is promoted. Each
subscriber receives every acknowledged delta exactly once or is told of an epoch change
(never a silent gap), nothing acknowledged after recovery is lost, and presence is right
within the documented expiry. (Several nodes on one plain Redis: test_redis_nodes.py.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from client import SyncClient
from server.broker.redis_keys import KeySpace

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
from .redis_topology import ClusterSet, client, cluster_set

pytestmark = [pytest.mark.timeout(150), pytest.mark.heavy]

PREFIX = "cluster"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterSet]:
    with cluster_set(tmp_path) as topology:
        yield topology


@pytest.fixture
async def nodes(cluster: ClusterSet) -> AsyncIterator[list[ServerProcess]]:
    async with server_nodes(cluster.url(PREFIX)) as started:
        yield started


def slot_of(collection_id: str) -> int:
    return key_slot(KeySpace(PREFIX).meta(collection_id).encode())


def one_per_master(cluster: ClusterSet) -> list[str]:
    """Collection ids whose slots are served by three different masters."""
    chosen: dict[int, str] = {}
    for n in range(200):
        collection_id = f"doc-{n}"
        chosen.setdefault(cluster.owner(slot_of(collection_id)).port, collection_id)
        if len(chosen) == 3:
            return list(chosen.values())
    raise AssertionError("200 collections all hashed to fewer than three masters")


async def test_slot_migration_and_master_failover_mid_stream(
    cluster: ClusterSet, nodes: list[ServerProcess]
) -> None:
    first, second = (f"grpc://{node.grpc_address}" for node in nodes)
    moved, failed, calm = one_per_master(cluster)
    tails: dict[str, list[Tail]] = {}
    publishers = {c: Publisher(SyncClient(second, PATIENT), c) for c in (moved, failed, calm)}
    try:
        for collection_id, publisher in publishers.items():
            tails[collection_id] = [
                await open_tail(first, collection_id), await open_tail(second, collection_id)
            ]
            await publisher.client.connect()
            await publisher.publish(10, "before")

        for collection_id in publishers:  # sharded pub/sub, on the collection's own master
            channel = KeySpace(PREFIX).channel(collection_id)
            with client(cluster.owner(slot_of(collection_id)).port) as owner:
                assert channel in owner.execute_command("PUBSUB", "SHARDCHANNELS")

        done = asyncio.Event()
        streams = [asyncio.create_task(p.publish_until(done, "during")) for p in publishers.values()]
        count = sum(len(p.acked) for p in publishers.values())
        await wait_until(
            lambda: sum(len(p.acked) for p in publishers.values()) > count + 10,
            "publishing mid-stream", 30,
        )
        # 1. Migrate a live collection's slot to another master.
        target = cluster.owner(slot_of(calm))  # not the master that fails over below
        await asyncio.to_thread(cluster.migrate_slot, slot_of(moved), target)
        assert cluster.owner(slot_of(moved)).port == target.port
        count = len(publishers[moved].acked)
        await wait_until(lambda: len(publishers[moved].acked) > count + 5, "publishes after the migration", 30)
        # 2. SIGKILL the master of another live collection: its replica takes over.
        doomed = cluster.owner(slot_of(failed))
        doomed.kill()
        await wait_until(
            lambda: cluster.owner(slot_of(failed)).port != doomed.port, "a replica was promoted", 30
        )
        count = len(publishers[failed].acked)
        await wait_until(lambda: len(publishers[failed].acked) > count + 5, "publishes after the failover", 30)
        done.set()
        await asyncio.gather(*streams)
        for publisher in publishers.values():
            await publisher.publish(5, "after")

        for collection_id, publisher in publishers.items():
            await wait_delivered(tails[collection_id], publisher.acked)
            for tail in tails[collection_id]:
                check_delivery(tail, publisher.acked)
                after = [ack.payload for ack in publisher.acked[-5:]]
                assert [e.data for e in tail.deltas[-5:]] == after  # nothing lost after recovery

        alive = {c: {t.client.peer_id for t in tails[c]} for c in tails}
        for collection_id, publisher in publishers.items():
            took = await wait_until(
                lambda c=collection_id, p=publisher: presence_is(p.client, c, alive[c]),  # type: ignore[misc]
                f"presence of {collection_id}", 10,
            )
            assert took < IDLE_TIMEOUT + 3.0
    finally:
        await close_tails([t for group in tails.values() for t in group])
        for publisher in publishers.values():
            await publisher.client.close(flush_timeout=0)
