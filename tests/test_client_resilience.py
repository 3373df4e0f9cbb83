"""SyncClient through a real TCP proxy that breaks connections: repeated cuts under load,
half-open connections, lost acknowledgements, refused ports."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator

import grpc
import pytest

from client import (
    Backoff,
    ClientConfig,
    ConnectionState,
    DeltaEvent,
    HeartbeatTimeout,
    Recovery,
    RecoveryEvent,
    RequestFailed,
    ServerUnreachableError,
    SyncClient,
    SyncError,
    SyncEvent,
)
from server.app import SyncwireServer

from .client_harness import FAST, RestartableServer, next_change
from .service_harness import poll_until, running_server
from .tcp_proxy import Direction, TcpProxy


@pytest.fixture
async def server() -> AsyncIterator[SyncwireServer]:
    async with running_server(history_size=10_000, heartbeat_interval=1.0) as running:
        yield running


@pytest.fixture
async def proxy(server: SyncwireServer) -> AsyncIterator[TcpProxy]:
    async with TcpProxy("127.0.0.1", server.grpc_port) as running:
        yield running


async def collect(client: SyncClient, count: int) -> list[DeltaEvent]:
    deltas: list[DeltaEvent] = []
    async for event in client.events():
        if isinstance(event, DeltaEvent):
            deltas.append(event)
            if len(deltas) == count:
                break
    return deltas


@pytest.fixture(params=["grpc", "ws"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def proxied(server: SyncwireServer, transport: str) -> TcpProxy:
    return TcpProxy("127.0.0.1", server.grpc_port if transport == "grpc" else server.ws_port)


@pytest.mark.timeout(60)
async def test_repeated_cuts_lose_and_duplicate_nothing(transport: str) -> None:
    """5,000 deltas while the proxy cuts every connection every 100 ms. The server runs
    in its own process (a core of its own)."""
    total = 5000
    server = RestartableServer("--history-size", "10000")
    await server.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            target = server.grpc_port if transport == "grpc" else server.ws_port
            proxy = await stack.enter_async_context(TcpProxy("127.0.0.1", target))
            endpoint = f"{transport}://{proxy.address}"
            publisher = await stack.enter_async_context(SyncClient(endpoint, FAST))
            subscribers = [
                await stack.enter_async_context(SyncClient(endpoint, FAST)) for _ in range(3)
            ]
            for subscriber in subscribers:
                await subscriber.subscribe("doc")
            collectors = [asyncio.create_task(collect(s, total)) for s in subscribers]

            async def cut_repeatedly() -> None:
                while True:
                    await asyncio.sleep(0.1)
                    proxy.cut()

            cutter = asyncio.create_task(cut_repeatedly())
            pending = [publisher.submit("doc", str(i).encode()) for i in range(total)]
            acks = [await item for item in pending]
            async with asyncio.timeout(30):
                received = await asyncio.gather(*collectors)
            cutter.cancel()
            direct = await stack.enter_async_context(SyncClient(server.grpc_endpoint, FAST))
            history = await direct.history("doc", limit=total + 10)
    finally:
        await server.stop()

    assert proxy.cuts >= 5, "the connection was not cut often enough to mean anything"
    assert publisher.stats.disconnects >= 3
    assert publisher.stats.publishes_sent > total  # retries happened...
    expected = [str(i).encode() for i in range(total)]
    assert [d.delta for d in history.deltas] == expected  # ...and each took effect once
    assert sorted(ack.offset for ack in acks) == list(range(1, total + 1))
    for subscriber, deltas in zip(subscribers, received, strict=True):
        assert [d.data for d in deltas] == expected  # all, in order, no duplicates
        assert [d.offset for d in deltas] == list(range(1, total + 1))
        assert subscriber.stats.disconnects >= 3


@pytest.mark.timeout(30)
async def test_half_open_connection_is_detected_and_recovered(
    server: SyncwireServer, transport: str
) -> None:
    async with (
        proxied(server, transport) as proxy,
        SyncClient(f"{transport}://{proxy.address}", FAST) as client,
        SyncClient(f"grpc://{server.grpc_address}", FAST) as direct,
    ):
        sub = await client.subscribe("doc")
        await direct.publish("doc", b"before")
        assert [d.data for d in await collect(client, 1)] == [b"before"]
        lost = asyncio.create_task(next_change(client, ConnectionState.RECONNECTING))
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert proxy.stall() == 1  # nothing flows, nothing closes
        await direct.publish("doc", b"during")
        change = await lost
        detected = loop.time() - started
        # Bound: 2 x the server's 1 s heartbeat interval + the 0.5 s margin.
        assert isinstance(change.error, HeartbeatTimeout)
        assert 1.5 < detected < 3.5, detected
        recovered = await asyncio.wait_for(anext(client.events()), 5)
        assert isinstance(recovered, RecoveryEvent)
        assert (recovered.recovery, recovered.replayed) == (Recovery.RECOVERED, 1)
        assert [d.data for d in await collect(client, 1)] == [b"during"]
        assert sub.offset == 2 and client.state is ConnectionState.CONNECTED
        proxy.cut()  # let the abandoned connection's close handshake end now


@pytest.mark.timeout(30)
async def test_lost_acks_are_retried_with_the_same_id_exactly_once(
    server: SyncwireServer, proxy: TcpProxy
) -> None:
    async with (
        SyncClient(f"grpc://{proxy.address}", FAST) as publisher,
        SyncClient(f"grpc://{server.grpc_address}", FAST) as watcher,
    ):
        # 50 collections: a collection has one publish in flight at a time (order), so
        # all 50 are in flight together only when each goes to a collection of its own.
        for i in range(50):
            await watcher.subscribe(f"doc{i}")
        await publisher.connect()
        proxy.stall(Direction.DOWNSTREAM)  # requests reach the server, answers vanish
        pending = [publisher.submit(f"doc{i}", f"{i}".encode()) for i in range(50)]
        seen = await asyncio.wait_for(collect(watcher, 50), 10)  # the server took them all
        acks = [await item for item in pending]  # after the reconnect, from the retries
        assert [ack.offset for ack in acks] == [1] * 50
        assert all(ack.duplicate for ack in acks)
        assert sorted(d.data for d in seen) == sorted(f"{i}".encode() for i in range(50))
        for i in range(50):
            history = await watcher.history(f"doc{i}")
            assert len(history.deltas) == 1 and history.offset == 1
        assert watcher.stats.deltas == 50


@pytest.mark.timeout(30)
async def test_offline_after_max_attempts_until_reconnect(
    server: SyncwireServer, proxy: TcpProxy
) -> None:
    config = ClientConfig(backoff=Backoff(base=0.01, cap=0.05, max_attempts=3))
    await proxy.refuse()
    async with SyncClient(f"grpc://{proxy.address}", config) as client:
        with pytest.raises(SyncError) as failed:
            await client.connect()
        assert failed.value.code is grpc.StatusCode.UNAVAILABLE
        assert client.state is ConnectionState.OFFLINE
        assert client.stats.connect_attempts == 3
        pending = client.submit("doc", b"queued while offline")
        await proxy.start()
        await asyncio.wait_for(client.connect(), 5)  # leaves OFFLINE and tries again
        assert (await asyncio.wait_for(pending.wait(), 5)).offset == 1


@pytest.mark.timeout(30)
async def test_unanswered_blob_raises_sync_error(server: SyncwireServer, proxy: TcpProxy) -> None:
    async with SyncClient(f"grpc://{proxy.address}", ClientConfig(request_timeout=0.5)) as client:
        await client.connect()
        assert proxy.stall(Direction.DOWNSTREAM) == 1
        with pytest.raises(RequestFailed) as failed:
            await client.send_blob(b"unanswered")
        assert failed.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert (failed.value.reason_code, failed.value.message) == (
            "timeout",
            "blob not acknowledged within 0.5 s",
        )


class _LongestDelay(random.Random):
    """Full jitter pinned to its bound: every backoff delay is exactly `Backoff.bound`."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.timeout(30)
async def test_first_connect_gives_up_after_its_timeout_reconnects_do_not(
    server: SyncwireServer, proxy: TcpProxy
) -> None:
    backoff = Backoff(base=0.2, cap=0.2, rng=_LongestDelay())
    config = ClientConfig(first_connect_timeout=0.05, backoff=backoff)
    url = f"grpc://{proxy.address}"
    await proxy.refuse()
    async with SyncClient(url, config) as client:
        with pytest.raises(ServerUnreachableError) as failed:
            await client.connect()
        assert failed.value.code is grpc.StatusCode.UNAVAILABLE
        assert failed.value.endpoints == [url] and failed.value.timeout == 0.05
        assert str(failed.value).startswith(f"UNAVAILABLE [server_unreachable]: cannot reach {url}")
        assert client.state is ConnectionState.CONNECTING  # still trying in the background
        await proxy.start()
        await asyncio.wait_for(client.connect(timeout=None), 10)

        # Connected once: a drop is retried without the first-connect bound.
        await proxy.refuse()
        dropped = asyncio.ensure_future(next_change(client, ConnectionState.RECONNECTING))
        proxy.cut()
        await asyncio.wait_for(dropped, 10)
        waiting = asyncio.ensure_future(client.connect())
        attempts = client.stats.connect_attempts
        # Two more failed attempts: at least one 0.2 s backoff delay, 4 x the bound.
        await poll_until(lambda: client.stats.connect_attempts >= attempts + 2, "two retries")
        assert not waiting.done()
        await proxy.start()
        await asyncio.wait_for(waiting, 10)
        assert client.stats.connect_attempts > attempts


@pytest.mark.timeout(30)
async def test_slow_application_pauses_and_rejoins_without_losing_deltas() -> None:
    """A full event buffer pauses the subscription instead of blocking the stream: the
    application's own publishes are still acknowledged, the liveness check sees traffic,
    and once the application reads, the rejoin replays what was dropped meanwhile."""
    config = dataclasses.replace(FAST, heartbeat_timeout=0.6, event_buffer=10)
    async with (
        running_server(heartbeat_interval=0.2) as server,
        SyncClient(f"grpc://{server.grpc_address}", config) as client,
    ):
        await client.subscribe("doc")
        for i in range(50):  # nobody reads events meanwhile, yet every ack arrives
            await client.publish("doc", f"{i}".encode())
        await asyncio.sleep(1.0)  # the application is busy for longer than the timeout
        await poll_until(lambda: client.stats.deltas_deferred >= 40, "40 deltas deferred")
        assert client.stats.pauses == 1 and client.stats.deltas_deferred == 40
        events = [event async for event in take(client, 51)]
        deltas = [e for e in events if isinstance(e, DeltaEvent)]
        assert [d.data for d in deltas] == [f"{i}".encode() for i in range(50)]
        (rejoined,) = [e for e in events if isinstance(e, RecoveryEvent)]
        assert (rejoined.recovery, rejoined.replayed) == (Recovery.RECOVERED, 40)
        assert client.stats.disconnects == 0 and client.state is ConnectionState.CONNECTED


async def take(client: SyncClient, count: int) -> AsyncIterator[SyncEvent]:
    async with asyncio.timeout(10):
        async for event in client.events():
            yield event
            count -= 1
            if not count:
                return


@pytest.mark.timeout(30)
async def test_a_failed_outbox_pump_is_reported_and_restarted(
    server: SyncwireServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from client.publishing import PublishPump

    real_run = PublishPump.run
    failures: list[int] = []

    async def fails_once(self: PublishPump) -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("pump broke")
        await real_run(self)

    monkeypatch.setattr(PublishPump, "run", fails_once)
    config = dataclasses.replace(FAST, outbox_path=None)
    async with SyncClient(f"grpc://{server.grpc_address}", config) as client:
        await client.connect()
        # The broken pump ends the connection loudly; the next one flushes the outbox.
        ack = await asyncio.wait_for(client.publish("doc", b"x"), 20)
        assert ack.offset == 1
        assert client.stats.connections >= 2
    assert any(
        record.getMessage() == "outbox pump failed; reconnecting" for record in caplog.records
    )
