"""Issue 18, snapshots for late joiners, on both brokers.

A subscribe whose position history cannot cover (a new client from offset 0 after
history rolled off, GAP_TOO_OLD, EPOCH_MISMATCH) gets the collection's latest snapshot
and then every delta after its offset, exactly once, with RECOVERY_STATUS_SNAPSHOT;
a snapshot history does not continue from is not used. Puts follow the offset/epoch
rules and the size bound; clients put only when the server allows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from client import ClientConfig, DeltaEvent, Recovery, RequestFailed, SnapshotEvent, SyncClient
from server.app import SyncwireServer
from server.config import ConfigError
from server.errors import RequestError
from syncwire.v1 import sync_pb2, types_pb2

from .redis_harness import redis_base_url, redis_url  # noqa: F401  (fixtures)
from .service_harness import SyncStream, stream_on
from .service_harness import test_config as make_config

pytestmark = pytest.mark.timeout(60)

DOC = "doc"
HISTORY = 10


@pytest.fixture(params=["memory", "redis"])
def broker(request: pytest.FixtureRequest) -> str:
    return "memory://" if request.param == "memory" else str(request.getfixturevalue("redis_url"))


@contextlib.asynccontextmanager
async def serving(broker: str, **overrides: Any) -> AsyncIterator[SyncwireServer]:
    running = SyncwireServer(make_config(broker=broker, history_size=HISTORY, **overrides))
    await running.start()
    try:
        async with asyncio.timeout(30):
            await running.core.broker.wait_healthy(True)
        yield running
    finally:
        await running.stop(grace=1.0)


@pytest.fixture
async def server(broker: str) -> AsyncIterator[SyncwireServer]:
    async with serving(broker) as running:
        yield running


async def publish_many(server: SyncwireServer, first: int, last: int) -> str:
    """Publishes deltas b"<n>" for n in first..last; returns the epoch."""
    epoch = ""
    for n in range(first, last + 1):
        ack = await server.core.publish(types_pb2.Delta(collection_id=DOC, delta=b"%d" % n))
        assert ack.offset == n
        epoch = ack.epoch
    return epoch


async def deltas(stream: SyncStream, count: int) -> list[bytes]:
    return [(await stream.expect("delta")).delta.delta for _ in range(count)]


@pytest.mark.parametrize("transport", ["grpc", "ws"])
async def test_a_late_joiner_gets_the_snapshot_then_every_later_delta_once(
    server: SyncwireServer, transport: str
) -> None:
    epoch = await publish_many(server, 1, 25)
    await server.core.put_snapshot(DOC, 20, b"state@20")
    await publish_many(server, 26, 30)  # history now holds 21..30: it continues the snapshot
    async with stream_on(server, transport) as joiner:
        subscribed = await joiner.subscribe(DOC, last_offset=0)
        assert subscribed.recovery == sync_pb2.RECOVERY_STATUS_SNAPSHOT
        assert (subscribed.snapshot_offset, subscribed.replayed) == (20, 10)
        assert (subscribed.offset, subscribed.oldest_offset, subscribed.epoch) == (30, 21, epoch)
        first = await joiner.expect_any()
        assert first.WhichOneof("kind") == "snapshot", first
        assert (first.snapshot.offset, first.snapshot.data, first.snapshot.epoch) == (
            20,
            b"state@20",
            epoch,
        )
        assert first.snapshot.created_at.seconds > 0
        assert await deltas(joiner, 10) == [b"%d" % n for n in range(21, 31)]
        # An old position (GAP_TOO_OLD) and another epoch (EPOCH_MISMATCH) get it too.
        for last_offset, old_epoch in ((3, epoch), (7, "an-old-epoch")):
            async with stream_on(server, transport) as other:
                answer = await other.subscribe(DOC, last_offset=last_offset, epoch=old_epoch)
                assert answer.recovery == sync_pb2.RECOVERY_STATUS_SNAPSHOT
                assert (await other.expect_any()).snapshot.data == b"state@20"
                assert await deltas(other, 10) == [b"%d" % n for n in range(21, 31)]
        # A position history covers gets no snapshot.
        async with stream_on(server, transport) as recent:
            answer = await recent.subscribe(DOC, last_offset=28, epoch=epoch)
            assert (answer.recovery, answer.snapshot_offset) == (
                sync_pb2.RECOVERY_STATUS_RECOVERED,
                0,
            )
            assert (await recent.expect_any()).delta.offset == 29
        # Live deltas follow the replay, once: the next thing the joiner gets is 31.
        await publish_many(server, 31, 31)
        assert (await joiner.expect_any()).delta.delta == b"31"


async def test_a_snapshot_history_does_not_continue_is_not_used(server: SyncwireServer) -> None:
    await publish_many(server, 1, 15)
    await server.core.put_snapshot(DOC, 4, b"state@4")
    await publish_many(server, 16, 20)  # history holds 11..20: 5..10 are gone
    async with stream_on(server, "grpc") as joiner:
        subscribed = await joiner.subscribe(DOC, last_offset=0)
        assert subscribed.recovery == sync_pb2.RECOVERY_STATUS_GAP_TOO_OLD
        assert subscribed.snapshot_offset == 0
        assert (await joiner.expect_any()).delta.offset == 11


async def test_puts_follow_the_offset_and_epoch_rules(server: SyncwireServer) -> None:
    epoch = await publish_many(server, 1, 5)
    stored = await server.core.put_snapshot(DOC, 4, b"s4", epoch)
    assert (stored.offset, stored.epoch) == (4, epoch)
    failed, ranged = grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE
    refusals: list[tuple[int, bytes, str, grpc.StatusCode, str]] = [
        (6, b"s", "", ranged, "snapshot_offset_ahead"),
        (5, b"s", "nope", failed, "snapshot_epoch_mismatch"),
        (
            5,
            b"x" * (server.config.snapshot_limit + 1),
            "",
            grpc.StatusCode.INVALID_ARGUMENT,
            "snapshot_too_large",
        ),
        (3, b"s", epoch, failed, "snapshot_outdated"),
    ]
    for offset, data, given_epoch, code, reason in refusals:
        with pytest.raises(RequestError) as refused:
            await server.core.put_snapshot(DOC, offset, data, given_epoch)
        assert (refused.value.code, refused.value.reason_code) == (code, reason)
    snapshot = await server.core.broker.get_snapshot(DOC)
    assert snapshot is not None and (snapshot.offset, snapshot.data) == (4, b"s4")


@pytest.mark.parametrize("allowed", [False, True])
async def test_clients_put_snapshots_only_when_allowed(broker: str, allowed: bool) -> None:
    async with serving(broker, client_snapshots=allowed) as server:
        await publish_many(server, 1, 2)
        async with stream_on(server, "ws") as client:
            put = sync_pb2.PutSnapshot(collection_id=DOC, offset=2, data=b"mine")
            reply = await client.expect_reply(client.send(put_snapshot=put))
        snapshot = await server.core.broker.get_snapshot(DOC)
        if allowed:
            assert (reply.snapshot_stored.offset, reply.snapshot_stored.collection_id) == (2, DOC)
            assert snapshot is not None and snapshot.data == b"mine"
        else:
            assert reply.error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
            assert reply.error.reason_code == "snapshots_not_allowed"
            assert snapshot is None


async def test_the_sync_client_shows_the_snapshot_before_the_deltas(server: SyncwireServer) -> None:
    await publish_many(server, 1, 25)
    await server.core.put_snapshot(DOC, 22, b"state@22")
    config = ClientConfig(outbox_path=None)
    async with SyncClient([f"grpc://{server.grpc_address}"], config) as client:
        await client.connect()
        subscription = await client.subscribe(DOC, last_offset=0)
        assert subscription.recovery is Recovery.SNAPSHOT
        seen: list[SnapshotEvent | DeltaEvent] = []
        async with asyncio.timeout(20):
            async for event in client.events():
                if isinstance(event, (SnapshotEvent, DeltaEvent)):
                    seen.append(event)
                if len(seen) == 4:
                    break
        assert isinstance(seen[0], SnapshotEvent) and seen[0].data == b"state@22"
        assert [e.offset for e in seen] == [22, 23, 24, 25]
        assert (subscription.offset, subscription.recovery.lost_deltas) == (25, False)


async def test_the_cli_tail_says_it_starts_from_a_snapshot(server: SyncwireServer) -> None:
    """`syncwire subscribe --from-offset 0` past history: a notice names the snapshot
    (its deltas are not printed), then the deltas after it; nothing passes silently."""
    epoch = await publish_many(server, 1, HISTORY + 5)  # history keeps 6..15
    await server.core.put_snapshot(DOC, HISTORY + 2, b"state", epoch)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client.cli", "subscribe", DOC, "--from-offset", "0",
        "-n", "3", "-s", f"grpc://{server.grpc_address}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("SYNCWIRE_")},
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert [line.split()[0] for line in out.decode().splitlines()] == ["#13", "#14", "#15"]
    notice = " ".join(err.decode().split())
    assert f"its snapshot at offset {HISTORY + 2} (5 bytes, not printed)" in notice, notice


@pytest.mark.parametrize("transport", ["grpc", "ws"])
async def test_a_snapshot_of_the_largest_size_travels_both_ways(
    broker: str, transport: str
) -> None:
    """A snapshot at exactly --max-snapshot-bytes can be put by a client over the network
    and is delivered whole to a late joiner (once, the limit sat at max-message-bytes,
    so the transport refused such a put before the server could answer)."""
    async with serving(broker, client_snapshots=True) as server:
        await publish_many(server, 1, HISTORY + 5)
        data = bytes(range(256)) * (server.config.snapshot_limit // 256)
        data += b"x" * (server.config.snapshot_limit - len(data))
        async with stream_on(server, transport) as client:
            put = sync_pb2.PutSnapshot(collection_id=DOC, offset=HISTORY + 5, data=data)
            reply = await client.expect_reply(client.send(put_snapshot=put))
            assert reply.snapshot_stored.offset == HISTORY + 5, reply
            too_big = sync_pb2.PutSnapshot(collection_id=DOC, offset=HISTORY + 5, data=data + b"!")
            refused = await client.expect_reply(client.send(put_snapshot=too_big))
            assert refused.error.reason_code == "snapshot_too_large"
        async with stream_on(server, transport) as joiner:
            await joiner.subscribe(DOC, last_offset=0)
            snapshot = (await joiner.expect("snapshot")).snapshot
            assert (snapshot.offset, snapshot.data) == (HISTORY + 5, data)


def test_the_snapshot_limit_must_fit_in_a_message() -> None:
    with pytest.raises(ConfigError, match=r"invalid max_snapshot_bytes = 1048576: must leave 4096"):
        make_config(max_snapshot_bytes=1024 * 1024)
    assert make_config(max_message_bytes=2 * 1024 * 1024, max_snapshot_bytes=1024 * 1024)
    # The default follows --max-message-bytes, also when that is lowered.
    assert make_config().snapshot_limit == 1024 * 1024 - 4096
    assert make_config(max_message_bytes=2048).snapshot_limit == 1024


async def test_the_sync_client_puts_a_snapshot_a_late_joiner_receives(broker: str) -> None:
    """SyncClient.put_snapshot (the web client's putSnapshot twin): stored with the
    server's answer, refused with its reason when not allowed or too large."""
    async with serving(broker, client_snapshots=True) as server:
        config = ClientConfig(outbox_path=None)
        async with SyncClient([f"ws://{server.ws_url.removeprefix('ws://')}"], config) as writer:
            await writer.connect()
            await writer.subscribe(DOC)
            for n in range(1, HISTORY + 4):
                await writer.publish(DOC, b"%d" % n)
            stored = await writer.put_snapshot(DOC, HISTORY + 3, b"state")
            assert (stored.collection_id, stored.offset) == (DOC, HISTORY + 3)
            with pytest.raises(RequestFailed) as refused:
                await writer.put_snapshot(
                    DOC, HISTORY + 3, b"x" * (server.config.snapshot_limit + 1)
                )
            assert refused.value.reason_code == "snapshot_too_large"
            with pytest.raises(RequestFailed) as ahead:
                await writer.put_snapshot(DOC, HISTORY + 4, b"later")
            assert ahead.value.reason_code == "snapshot_offset_ahead"
        async with SyncClient([f"grpc://{server.grpc_address}"], config) as joiner:
            await joiner.connect()
            subscription = await joiner.subscribe(DOC, last_offset=0)
            assert subscription.recovery is Recovery.SNAPSHOT
            async with asyncio.timeout(20):
                async for event in joiner.events():
                    if isinstance(event, SnapshotEvent):
                        assert (event.offset, event.data) == (HISTORY + 3, b"state")
                        break
