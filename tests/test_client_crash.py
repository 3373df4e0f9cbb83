"""SyncClient against a server process that is SIGKILLed and restarted on the same ports:
reconnection within the backoff cap, explicit notice of lost history, outbox flushing
exactly once, and an outbox file that a new client process flushes."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from client import (
    Backoff,
    ClientConfig,
    ConnectionState,
    DeltaEvent,
    Recovery,
    RecoveryEvent,
    SyncClient,
)

from .client_harness import RestartableServer, next_change, next_event, restartable_server

pytestmark = pytest.mark.timeout(40)

CAP = 1.0
CONFIG = ClientConfig(backoff=Backoff(base=0.1, cap=CAP), connect_timeout=2.0, heartbeat_margin=0.5)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "client_app.py"


@pytest.fixture
async def server() -> AsyncIterator[RestartableServer]:
    async with restartable_server("--heartbeat-interval", "1") as running:
        yield running


async def wait_for_retries(client: SyncClient, attempts: int) -> None:
    """Returns once the client has failed `attempts` reconnection attempts in a row."""
    failed = 0
    async for change in client.state_changes():
        if change.state is ConnectionState.RECONNECTING and change.delay is not None:
            failed += 1
            if failed >= attempts:
                return


async def test_sigkill_restart_reconnects_within_cap_and_reports_lost_history(
    server: RestartableServer,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(SyncClient(url, CONFIG))
            for url in (server.grpc_endpoint, server.ws_endpoint)
        ]
        subscriptions = [await client.subscribe("doc") for client in clients]
        for i in range(3):
            await clients[0].publish("doc", f"old {i}".encode())
        for client in clients:
            assert [(await next_event(client, DeltaEvent)).offset for _ in range(3)] == [1, 2, 3]
        old_epoch = subscriptions[0].epoch

        retrying = [asyncio.create_task(wait_for_retries(c, 3)) for c in clients]
        await server.kill()
        await asyncio.wait_for(asyncio.gather(*retrying), 15)  # down long enough to back off
        reconnected = [
            asyncio.create_task(next_change(c, ConnectionState.CONNECTED)) for c in clients
        ]
        loop = asyncio.get_running_loop()
        await server.restart()
        ready = loop.time()
        await asyncio.wait_for(asyncio.gather(*reconnected), CAP + 3)
        assert loop.time() - ready < CAP + 1.0  # the longest backoff wait, plus connecting

        for client, subscription in zip(clients, subscriptions, strict=True):
            notice = await asyncio.wait_for(next_event(client, RecoveryEvent), 5)
            assert notice.recovery is Recovery.EPOCH_MISMATCH and notice.recovery.lost_deltas
            assert (notice.previous_epoch, notice.previous_offset) == (old_epoch, 3)
            assert notice.epoch != old_epoch and not notice.unsolicited
            assert subscription.epoch == notice.epoch and subscription.offset == 0
            assert client.stats.gaps == 1
        # The new epoch restarts offsets at 1: nothing is dropped as "already seen".
        ack = await clients[1].publish("doc", b"new")
        assert ack.offset == 1
        for client in clients:
            delta = await asyncio.wait_for(next_event(client, DeltaEvent), 5)
            assert (delta.offset, delta.data) == (1, b"new")


async def test_outbox_filled_while_server_down_is_flushed_exactly_once(
    server: RestartableServer,
) -> None:
    async with (
        SyncClient(server.grpc_endpoint, CONFIG) as publisher,
        SyncClient(server.ws_endpoint, CONFIG) as watcher,
    ):
        await watcher.subscribe("doc")
        await publisher.connect()
        lost = asyncio.create_task(next_change(publisher, ConnectionState.RECONNECTING))
        await server.kill()
        await asyncio.wait_for(lost, 10)
        pending = [publisher.submit("doc", f"offline {i}".encode()) for i in range(200)]
        assert publisher.outbox_size == 200
        await server.restart()
        acks = [await asyncio.wait_for(item.wait(), 10) for item in pending]
        assert [ack.offset for ack in acks] == list(range(1, 201))
        assert not any(ack.duplicate for ack in acks)
        assert publisher.outbox_size == 0
        history = await watcher.history("doc")
        assert [d.delta for d in history.deltas] == [f"offline {i}".encode() for i in range(200)]
        # Whether the watcher came back before, during or after the flush, the rejoin
        # replays what the new epoch holds (from offset 1) and live delivery continues
        # after it: every delta exactly once, in order.
        notice = await asyncio.wait_for(next_event(watcher, RecoveryEvent), 5)
        assert notice.recovery is Recovery.EPOCH_MISMATCH
        assert notice.replayed == notice.offset  # everything the new epoch held at the time
        seen = [await asyncio.wait_for(next_event(watcher, DeltaEvent), 5) for _ in range(200)]
        assert [d.offset for d in seen] == list(range(1, 201))


async def run_example(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


def outbox_rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
    return int(count)


async def test_outbox_file_is_flushed_by_a_new_client_process(
    server: RestartableServer, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.db"
    common = ("--endpoint", server.grpc_endpoint, "--outbox", str(outbox), "--backoff-cap", "0.5")
    await server.kill()
    code, output = await run_example(*common, "publish", "notes", "--count", "25", "--queue-only")
    assert code == 0, output
    assert "queued 25 outbox=25" in output
    assert outbox_rows(outbox) == 25  # the first process is gone; its publishes are not

    await server.restart()
    code, output = await run_example(*common, "flush")
    assert code == 0, output
    assert "flushed 25" in output
    assert outbox_rows(outbox) == 0
    code, output = await run_example(*common, "flush")
    assert (code, "flushed 0" in output) == (0, True)

    async with SyncClient(server.grpc_endpoint, CONFIG) as reader:
        history = await reader.history("notes")
    assert [d.delta for d in history.deltas] == [f"delta {i}".encode() for i in range(25)]
    assert len({d.client_message_id for d in history.deltas}) == 25
