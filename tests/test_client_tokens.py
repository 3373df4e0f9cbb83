"""SyncClient's token provider against a real server whose authenticator clock the test
drives: short-lived tokens refreshed in band and at reconnects without losing or
duplicating a delta, a refused token ending in the terminal TokenRefused, a collection
the refreshed token no longer grants ending only that subscription, and an epoch change
replayed in the same subscribe."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from client import (
    Backoff,
    ClientConfig,
    ConnectionState,
    DeltaEvent,
    ErrorEvent,
    Recovery,
    RecoveryEvent,
    RequestFailed,
    SyncClient,
    SystemClock,
    TokenRefused,
    TokenRefusedError,
)
from server.app import SyncwireServer
from server.core import SyncCore
from server.grpc_server import build_grpc_server
from server.servicer import SyncServicer
from server.session import Session
from syncwire.v1 import sync_pb2

from .client_harness import RestartableServer, next_change, next_event, restartable_server
from .clock_harness import AUDIENCE, ManualClock, server_on_clock
from .security_harness import OTHER_SECRET, SECRET, make_token
from .service_harness import test_config as server_config

pytestmark = pytest.mark.timeout(40)

LIFETIME = 60.0
MARGIN = 10.0
TIMEOUT = 10.0


@pytest.fixture
async def clock_and_server() -> AsyncIterator[tuple[ManualClock, SyncwireServer]]:
    clock = ManualClock()
    async with server_on_clock(clock) as server:
        yield clock, server


def endpoints(server: SyncwireServer) -> dict[str, str]:
    return {"grpc": f"grpc://{server.grpc_address}", "ws": server.ws_url}


class Issuer:
    """A token provider: each call signs a new token valid for `lifetime` clock seconds."""

    def __init__(self, clock: ManualClock, lifetime: float = LIFETIME, **claims: Any) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.claims = claims
        self.issued: list[str] = []

    def __call__(self) -> str:
        token = make_token(aud=AUDIENCE, exp=int(self.clock.time() + self.lifetime), **self.claims)
        self.issued.append(token)
        return token

    async def asynchronously(self) -> str:
        await asyncio.sleep(0)
        return self()


def config(clock: ManualClock, provider: Callable[[], str | Awaitable[str]]) -> ClientConfig:
    return ClientConfig(
        backoff=Backoff(base=0.02, cap=0.2),
        connect_timeout=5.0,
        request_timeout=5.0,
        token_provider=provider,
        token_refresh_margin=MARGIN,
        clock=clock,
    )


async def until(condition: Callable[[], bool]) -> None:
    """Returns once `condition()` holds (the client's counters have no event to wait on:
    polled on the event loop, bounded by TIMEOUT; never a wait for time to pass)."""
    async with asyncio.timeout(TIMEOUT):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def take_deltas(client: SyncClient, count: int) -> list[DeltaEvent]:
    return [await asyncio.wait_for(next_event(client, DeltaEvent), TIMEOUT) for _ in range(count)]


@pytest.mark.parametrize("transport", ["grpc", "ws"])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_short_lived_tokens_keep_a_subscription_across_refreshes_and_reconnects(
    clock_and_server: tuple[ManualClock, SyncwireServer], transport: str, kind: str
) -> None:
    clock, server = clock_and_server
    url = endpoints(server)[transport]
    issuer = Issuer(clock)
    provider = issuer if kind == "sync" else issuer.asynchronously
    publisher_tokens = Issuer(clock, lifetime=10 * 365 * 86400.0)
    async with (
        SyncClient(url, config(clock, provider)) as client,
        SyncClient(url, config(clock, publisher_tokens)) as publisher,
    ):
        await asyncio.wait_for(client.connect(), TIMEOUT)
        subscription = await client.subscribe("doc")
        first_token = issuer.issued[0]
        for i in range(3):
            await publisher.publish("doc", b"before %d" % i)

        # In band: past exp - margin the provider is asked and the session extended.
        clock.advance(LIFETIME - MARGIN + 1)
        await until(lambda: client.stats.token_refreshes == 1)
        assert len(issuer.issued) == 2
        clock.advance(MARGIN + 5)  # the first token has expired; the session lives on
        assert server.core.authenticator is not None
        with pytest.raises(Exception, match="token expired"):
            server.core.authenticator.authenticate(first_token)
        for i in range(3, 5):
            await publisher.publish("doc", b"after refresh %d" % i)

        # A reconnect after the first token expired asks the provider for a fresh one.
        await client.reconnect()
        for i in range(5, 8):
            await publisher.publish("doc", b"around reconnect %d" % i)
        await until(lambda: client.stats.connections == 2 and client.state.name == "CONNECTED")
        assert len(issuer.issued) == 3

        # And the next in-band refresh works on the new connection too.
        clock.advance(LIFETIME - MARGIN + 1)
        await until(lambda: client.stats.token_refreshes == 2)
        await publisher.publish("doc", b"last")

        deltas = await take_deltas(client, 9)
        assert [d.offset for d in deltas] == list(range(1, 10))  # none lost, none twice
        assert subscription.recovery is Recovery.RECOVERED
        assert client.state is ConnectionState.CONNECTED


async def test_session_expired_by_the_server_reconnects_with_a_fresh_token(
    clock_and_server: tuple[ManualClock, SyncwireServer],
) -> None:
    """The client's refresh never fires (it sleeps on the system clock while only the
    server's clock moves): the server ends the session at the token's expiry, and the
    client reconnects with the provider's next token and recovers what it missed."""
    clock, server = clock_and_server
    issuer = Issuer(clock)
    on_system_clock = dataclasses.replace(config(clock, issuer), clock=SystemClock())
    url = endpoints(server)["grpc"]
    async with (
        SyncClient(url, on_system_clock) as client,
        SyncClient(url, config(clock, Issuer(clock, lifetime=1e6))) as publisher,
    ):
        await asyncio.wait_for(client.connect(), TIMEOUT)
        subscription = await client.subscribe("doc")
        await publisher.publish("doc", b"before")
        expired = asyncio.create_task(
            next_change(client, ConnectionState.RECONNECTING, ConnectionState.CONNECTING)
        )
        await asyncio.sleep(0)  # the waiter observes state changes from here on
        clock.advance(LIFETIME + 1)
        change = await asyncio.wait_for(expired, TIMEOUT)
        assert change.error is not None and change.error.message == "token expired"
        await publisher.publish("doc", b"while away")
        await until(lambda: client.stats.connections == 2 and client.state.name == "CONNECTED")
        assert len(issuer.issued) == 2 and client.stats.token_refreshes == 0
        deltas = await take_deltas(client, 2)
        assert [(d.offset, d.data) for d in deltas] == [(1, b"before"), (2, b"while away")]
        assert subscription.recovery is Recovery.RECOVERED


@pytest.mark.parametrize("transport", ["grpc", "ws"])
async def test_refused_token_ends_in_token_refused_within_one_retry(
    clock_and_server: tuple[ManualClock, SyncwireServer], transport: str
) -> None:
    clock, server = clock_and_server
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        return make_token(OTHER_SECRET, aud=AUDIENCE, exp=int(clock.time() + LIFETIME))

    async with SyncClient(endpoints(server)[transport], config(clock, provider)) as client:
        with pytest.raises(TokenRefusedError) as refused:
            await asyncio.wait_for(client.connect(), TIMEOUT)
        assert calls == 2 and client.stats.connect_attempts == 2
        assert refused.value.reason_code == "invalid_token"
        assert client.state is ConnectionState.OFFLINE
        change = client._tracker.last_change
        assert change is not None and isinstance(change.error, TokenRefusedError)
        event = await asyncio.wait_for(next_event(client, TokenRefused), TIMEOUT)
        assert event.error is refused.value


async def test_first_refusal_asks_the_provider_once_more(
    clock_and_server: tuple[ManualClock, SyncwireServer],
) -> None:
    clock, server = clock_and_server
    good = Issuer(clock)
    tokens = iter([make_token(OTHER_SECRET, aud=AUDIENCE, exp=int(clock.time() + 60))])

    def provider() -> str:
        return next(tokens, None) or good()

    async with SyncClient(endpoints(server)["grpc"], config(clock, provider)) as client:
        await asyncio.wait_for(client.connect(), TIMEOUT)
        assert client.stats.connect_attempts == 2 and len(good.issued) == 1


async def test_refused_refresh_twice_is_terminal(
    clock_and_server: tuple[ManualClock, SyncwireServer],
) -> None:
    clock, server = clock_and_server
    good = Issuer(clock)
    issued: list[str] = []

    def provider() -> str:
        token = good() if not issued else good().replace(".", ".x", 1)  # bad signature
        issued.append(token)
        return token

    async with SyncClient(endpoints(server)["ws"], config(clock, provider)) as client:
        await asyncio.wait_for(client.connect(), TIMEOUT)
        offline = asyncio.create_task(next_change(client, ConnectionState.OFFLINE))
        clock.advance(LIFETIME - MARGIN + 1)
        change = await asyncio.wait_for(offline, TIMEOUT)
        assert isinstance(change.error, TokenRefusedError)
        assert change.error.reason_code == "invalid_token"
        assert len(issued) == 3 and client.stats.token_refreshes == 0
        assert isinstance(await next_event(client, TokenRefused), TokenRefused)


@pytest.mark.parametrize("transport", ["grpc", "ws"])
async def test_permission_denied_ends_one_subscription_not_the_connection(
    clock_and_server: tuple[ManualClock, SyncwireServer], transport: str
) -> None:
    clock, server = clock_and_server
    grants = iter([["kept", "revoked"]])

    def provider() -> str:
        return make_token(
            aud=AUDIENCE, exp=int(clock.time() + LIFETIME), subs=next(grants, ["kept"])
        )

    url = endpoints(server)[transport]
    async with (
        SyncClient(url, config(clock, provider)) as client,
        SyncClient(url, config(clock, Issuer(clock, lifetime=1e6))) as publisher,
    ):
        await asyncio.wait_for(client.connect(), TIMEOUT)
        await client.subscribe("kept")
        await client.subscribe("revoked")
        with pytest.raises(RequestFailed) as denied:
            await client.subscribe("never-granted")
        assert denied.value.reason_code == "forbidden"

        clock.advance(LIFETIME - MARGIN + 1)  # the refreshed token drops "revoked"
        event = await asyncio.wait_for(next_event(client, ErrorEvent), TIMEOUT)
        assert (event.request, event.error.collection_id, event.error.reason_code) == (
            "subscribe",
            "revoked",
            "forbidden",
        )
        assert set(client.subscriptions) == {"kept"}
        await publisher.publish("revoked", b"not for us")
        await publisher.publish("kept", b"still delivered")
        delta = await asyncio.wait_for(next_event(client, DeltaEvent), TIMEOUT)
        assert (delta.collection_id, delta.data) == ("kept", b"still delivered")
        assert client.state is ConnectionState.CONNECTED and client.stats.connections == 1


@pytest.fixture
async def restartable() -> AsyncIterator[RestartableServer]:
    async with restartable_server("--heartbeat-interval", "1") as running:
        yield running


async def test_epoch_change_replays_the_new_epochs_deltas_in_the_same_subscribe(
    restartable: RestartableServer,
) -> None:
    once = ClientConfig(backoff=Backoff(base=0.05, cap=0.1, max_attempts=1), connect_timeout=2.0)
    async with contextlib.AsyncExitStack() as stack:
        watcher = await stack.enter_async_context(SyncClient(restartable.ws_endpoint, once))
        subscription = await watcher.subscribe("doc")
        await watcher.publish("doc", b"old")
        assert (await next_event(watcher, DeltaEvent)).offset == 1
        old_epoch = subscription.epoch

        offline = asyncio.create_task(next_change(watcher, ConnectionState.OFFLINE))
        await restartable.kill()
        await asyncio.wait_for(offline, TIMEOUT)
        await restartable.restart()  # a new in-memory broker: history lost, a new epoch
        async with SyncClient(restartable.grpc_endpoint, once) as publisher:
            acks = [await publisher.publish("doc", b"new %d" % i) for i in range(3)]
        assert [ack.offset for ack in acks] == [1, 2, 3]

        await watcher.reconnect()
        notice = await asyncio.wait_for(next_event(watcher, RecoveryEvent), TIMEOUT)
        assert notice.recovery is Recovery.EPOCH_MISMATCH and not notice.unsolicited
        assert (notice.previous_epoch, notice.previous_offset) == (old_epoch, 1)
        assert (notice.epoch, notice.replayed, notice.oldest_offset) == (acks[0].epoch, 3, 1)
        deltas = await take_deltas(watcher, 3)
        assert [(d.offset, d.epoch, d.data) for d in deltas] == [
            (i + 1, acks[0].epoch, b"new %d" % i) for i in range(3)
        ]
        assert (subscription.epoch, subscription.offset) == (acks[0].epoch, 3)


class PreRefreshServicer(SyncServicer):
    """SyncService as a server from before RefreshToken (SyncRequest field 9) would
    serve it: its SyncRequest has no such field, so protobuf skips it as unknown and the
    request sets no kind; the session answers that with Error `empty_request`."""

    @staticmethod
    async def _read(
        request_iterator: AsyncIterator[sync_pb2.SyncRequest], session: Session
    ) -> None:
        async def as_parsed_by_an_older_server() -> AsyncIterator[sync_pb2.SyncRequest]:
            async for request in request_iterator:
                request.ClearField("refresh_token")
                yield request

        await SyncServicer._read(as_parsed_by_an_older_server(), session)


@contextlib.asynccontextmanager
async def pre_refresh_server(clock: ManualClock) -> AsyncIterator[str]:
    """A real gRPC server on a loopback port serving PreRefreshServicer with
    authentication judged by `clock`; yields its grpc:// URL."""
    settings = server_config(
        auth_secret=SECRET, auth_audience=AUDIENCE, auth_leeway=0.0, heartbeat_interval=0.2
    )
    core = SyncCore(settings)
    assert core.authenticator is not None
    core.authenticator.clock = clock.time
    grpc_server, _health = build_grpc_server(settings, PreRefreshServicer(core))
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    await core.start()
    await grpc_server.start()
    try:
        yield f"grpc://127.0.0.1:{port}"
    finally:
        core.begin_shutdown()
        await grpc_server.stop(1.0)
        await core.stop()


async def test_a_server_without_refresh_token_gets_the_new_token_by_a_reconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The in-band refresh is answered INVALID_ARGUMENT `empty_request`: the client
    reconnects with a fresh token before the old one expires and loses no delta."""
    clock = ManualClock()
    issuer = Issuer(clock)
    async with (
        pre_refresh_server(clock) as url,
        SyncClient(url, config(clock, issuer)) as client,
        SyncClient(url, config(clock, Issuer(clock, lifetime=1e6))) as publisher,
    ):
        await asyncio.wait_for(client.connect(), TIMEOUT)
        subscription = await client.subscribe("doc")
        await publisher.publish("doc", b"before")
        clock.advance(LIFETIME - MARGIN + 1)
        await until(lambda: client.stats.connections == 2 and client.state.name == "CONNECTED")
        assert client.stats.token_refreshes == 0
        # One token for the refused refresh, one for the reconnect.
        assert len(issuer.issued) == 3
        refusals = [r for r in caplog.records if "refresh refused" in r.getMessage()]
        assert refusals and "empty_request" in refusals[0].getMessage()
        clock.advance(MARGIN + 5)  # the first token has expired; the new session lives on
        await publisher.publish("doc", b"after")
        deltas = await take_deltas(client, 2)
        assert [(d.offset, d.data) for d in deltas] == [(1, b"before"), (2, b"after")]
        assert subscription.recovery is Recovery.RECOVERED
        assert client.state is ConnectionState.CONNECTED and client.stats.connections == 2
