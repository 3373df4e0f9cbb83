"""Three server processes behind one real redis-server, as operators run them.

Clients spread over the nodes see one delta order; presence spans the nodes; a crashed
node's clients recover on another node with nothing lost or doubled while its presence
expires; a Redis restart is survived and reported as an epoch change.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

from .process_harness import ServerProcess, start_server_process
from .redis_harness import RedisServer, redis_server, with_key_prefix  # noqa: F401
from .service_harness import SyncStream

pytestmark = pytest.mark.timeout(40)

HEARTBEAT = 0.2
IDLE_TIMEOUT = 1.0  # presence_ttl = max(idle timeout, 3 heartbeats) = 1 s
RECOVERED = sync_pb2.RECOVERY_STATUS_RECOVERED
EPOCH_MISMATCH = sync_pb2.RECOVERY_STATUS_EPOCH_MISMATCH


class Client:
    """One typed client on one node: a Sync stream that keeps itself alive."""

    def __init__(self, node: ServerProcess) -> None:
        self.node = node
        self.channel = grpc.aio.insecure_channel(node.grpc_address)
        self.stub = sync_pb2_grpc.SyncServiceStub(self.channel)
        self.stream = SyncStream(self.stub)
        self.deltas: list[types_pb2.Delta] = []
        self._beat = asyncio.create_task(self._heartbeats())

    async def _heartbeats(self) -> None:
        while True:
            self.stream.send(heartbeat=types_pb2.Heartbeat())
            await asyncio.sleep(HEARTBEAT)

    async def join(
        self, collection_id: str, *, last: types_pb2.Delta | None = None
    ) -> sync_pb2.Subscribed:
        await self.stream.welcome()
        return await self.stream.subscribe(
            collection_id,
            last_offset=last.offset if last else None,
            epoch=last.epoch if last else "",
            join_presence=True,
            user_info=types_pb2.UserInfo(user_id=f"user-{self.node.grpc_address}"),
        )

    async def take_deltas(self, count: int) -> list[types_pb2.Delta]:
        """Waits for the next `count` deltas and records them."""
        taken = [(await self.stream.expect("delta")).delta for _ in range(count)]
        self.deltas += taken
        return taken

    async def close(self) -> None:
        self._beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._beat
        await self.stream.close()
        await self.channel.close(None)


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[list[ServerProcess]]:  # noqa: F811
    """Three `python -m server --broker redis://...` processes (terminated by pid)."""
    url = with_key_prefix(redis_server.url(), f"c{uuid.uuid4().hex[:8]}")
    args = ["--broker", url, "--heartbeat-interval", str(HEARTBEAT)]
    args += ["--idle-timeout", str(IDLE_TIMEOUT), "--shutdown-grace", "0.5"]
    started = await asyncio.gather(
        *(start_server_process(*args) for _ in range(3)), return_exceptions=True
    )
    running = [node for node in started if isinstance(node, ServerProcess)]
    try:
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        yield running
    finally:
        for node in running:
            with contextlib.suppress(Exception):
                await node.terminate(timeout=5)


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    """Collects the test's clients and closes them all at the end."""
    made: list[Client] = []
    yield made
    for client in made:
        with contextlib.suppress(Exception):
            await client.close()


def connect(clients: list[Client], node: ServerProcess) -> Client:
    client = Client(node)
    clients.append(client)
    return client


async def publish_burst(client: Client, collection_id: str, count: int, tag: str) -> None:
    for i in range(count):
        ack = await client.stream.publish(collection_id, f"{tag}-{i}".encode())
        assert ack.offset > 0 and not ack.duplicate


async def presence_of(node: ServerProcess, collection_id: str) -> set[str]:
    async with grpc.aio.insecure_channel(node.grpc_address) as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        reply = await stub.GetPresence(sync_pb2.GetPresenceRequest(collection_id=collection_id))
    return {member.peer_id for member in reply.members}


async def test_clients_on_three_nodes_share_order_and_presence(
    nodes: list[ServerProcess], clients: list[Client]
) -> None:
    spread = [connect(clients, nodes[i % 3]) for i in range(6)]
    for client in spread:
        await client.join("doc")
    await asyncio.gather(*(publish_burst(c, "doc", 10, f"c{i}") for i, c in enumerate(spread)))
    orders = [await client.take_deltas(60) for client in spread]
    first = [(d.offset, d.delta, d.epoch) for d in orders[0]]
    assert [offset for offset, _, _ in first] == list(range(1, 61))
    assert len({data for _, data, _ in first}) == 60
    for order in orders[1:]:
        assert [(d.offset, d.delta, d.epoch) for d in order] == first

    peers = {client.stream.peer_id for client in spread}
    for node in nodes:
        assert await presence_of(node, "doc") == peers


async def test_crashed_node_clients_recover_elsewhere_and_its_presence_expires(
    nodes: list[ServerProcess], clients: list[Client]
) -> None:
    doomed = [connect(clients, nodes[0]) for _ in range(2)]
    publisher, observer = connect(clients, nodes[1]), connect(clients, nodes[2])
    for client in [*doomed, publisher, observer]:
        await client.join("doc")
    await publish_burst(publisher, "doc", 10, "before")
    for client in doomed:
        await client.take_deltas(10)

    nodes[0].kill()  # SIGKILL: no goodbye, no presence leave
    await nodes[0].process.wait()
    for client in doomed:
        ended = await client.stream.ended
        assert ended is not None and ended.code() == grpc.StatusCode.UNAVAILABLE
    await publish_burst(publisher, "doc", 10, "while-away")

    crashed_peers = {client.stream.peer_id for client in doomed}
    moved = []
    for client in doomed:
        successor = connect(clients, nodes[1])
        successor.deltas = client.deltas
        subscribed = await successor.join("doc", last=client.deltas[-1])
        assert subscribed.recovery == RECOVERED
        assert (subscribed.replayed, subscribed.offset) == (10, 20)
        await successor.take_deltas(10)
        moved.append(successor)
    await publish_burst(publisher, "doc", 5, "after")
    for successor in moved:
        await successor.take_deltas(5)
        assert [d.offset for d in successor.deltas] == list(range(1, 26))
        assert len({d.delta for d in successor.deltas}) == 25
    await publish_burst(publisher, "doc", 1, "marker")
    for successor in moved:
        assert (await successor.stream.expect("delta")).delta.offset == 26  # no duplicates

    started = time.monotonic()
    expired: set[str] = set()
    while expired != crashed_peers:
        leave = (await observer.stream.expect("peer_leave")).peer_leave
        assert leave.reason == "expired"
        expired.add(leave.peer_id)
    assert time.monotonic() - started < IDLE_TIMEOUT + 2.0
    alive = {c.stream.peer_id for c in [*moved, publisher, observer]}
    for node in nodes[1:]:
        assert await presence_of(node, "doc") == alive


async def test_redis_restart_is_survived_and_reported_as_a_new_epoch(
    nodes: list[ServerProcess],
    clients: list[Client],
    redis_server: RedisServer,  # noqa: F811
) -> None:
    spread = [connect(clients, node) for node in nodes]
    for client in spread:
        await client.join("doc")
    await publish_burst(spread[0], "doc", 3, "old")
    received = [await client.take_deltas(3) for client in spread]
    old = received[0]
    assert all(taken == old for taken in received)

    redis_server.kill()
    redis_server.start()  # same port, empty: history is gone
    epochs = set()
    for client in spread:
        notice = await client.stream.expect(
            "subscribed", lambda r: r.subscribed.recovery == EPOCH_MISMATCH
        )
        assert notice.request_id == 0
        assert (notice.subscribed.collection_id, notice.subscribed.offset) == ("doc", 0)
        epochs.add(notice.subscribed.epoch)
    (epoch,) = epochs
    assert epoch != old[-1].epoch

    await publish_burst(spread[1], "doc", 2, "new")
    for client in spread:
        assert [(d.offset, d.epoch) for d in await client.take_deltas(2)] == [
            (1, epoch),
            (2, epoch),
        ]

    again = connect(clients, nodes[2])
    subscribed = await again.join("doc", last=old[-1])
    assert (subscribed.recovery, subscribed.epoch, subscribed.offset) == (EPOCH_MISMATCH, epoch, 2)
    # The same subscribe replays what the new epoch holds, from its first offset.
    assert subscribed.replayed == 2
    assert [(d.offset, d.epoch) for d in await again.take_deltas(2)] == [(1, epoch), (2, epoch)]

    # Presence lost with Redis' data comes back with the nodes' next refresh.
    everyone = {client.stream.peer_id for client in [*spread, again]}
    deadline = time.monotonic() + 5
    while await presence_of(nodes[0], "doc") != everyone:
        assert time.monotonic() < deadline, "presence was not restored after the restart"
        await asyncio.sleep(HEARTBEAT)
