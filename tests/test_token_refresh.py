"""In-band token refresh on the Sync stream (RefreshToken -> TokenRefreshed), judged by
an injected authenticator clock, over gRPC and the WebSocket framing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from server.app import SyncwireServer
from syncwire.v1 import sync_pb2, sync_pb2_grpc

from .clock_harness import AUDIENCE, ManualClock, server_on_clock
from .security_harness import bearer, make_token
from .service_harness import TRANSPORTS, SyncStream, open_channel, running_server

pytestmark = pytest.mark.timeout(30)

LIFETIME = 60.0


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def clock_and_server() -> AsyncIterator[tuple[ManualClock, SyncwireServer]]:
    clock = ManualClock()
    async with server_on_clock(clock) as server:
        yield clock, server


def token(clock: ManualClock, lifetime: float = LIFETIME, **claims: object) -> str:
    return make_token(aud=AUDIENCE, exp=int(clock.time() + lifetime), **claims)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def session(
    server: SyncwireServer, transport: str, first_token: str, *collections: str
) -> AsyncIterator[SyncStream]:
    """A Sync stream opened with `first_token`, welcomed and subscribed to `collections`."""
    async with open_channel(server, transport) as channel:
        stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel), metadata=bearer(first_token))
        await stream.welcome()
        for collection in collections:
            await stream.subscribe(collection)
        yield stream


async def refresh(stream: SyncStream, new_token: str) -> sync_pb2.SyncResponse:
    request_id = stream.send(refresh_token=sync_pb2.RefreshToken(token=new_token))
    return await stream.expect_reply(request_id)


async def test_refresh_extends_the_session_past_the_first_token(
    clock_and_server: tuple[ManualClock, SyncwireServer], transport: str
) -> None:
    clock, server = clock_and_server
    first = token(clock)
    async with session(server, transport, first, "doc") as stream:
        clock.advance(LIFETIME - 10)
        answer = await refresh(stream, token(clock))
        assert answer.WhichOneof("kind") == "token_refreshed"
        assert answer.token_refreshed.expires_at.seconds == int(clock.time() + LIFETIME)
        clock.advance(20)  # the first token has expired; the session lives on the second
        assert server.core.authenticator is not None
        with pytest.raises(Exception, match="token expired"):
            server.core.authenticator.authenticate(first)
        ack = await stream.publish("doc", b"after the first token")
        assert (await stream.expect("delta")).delta.offset == ack.offset
        clock.advance(LIFETIME)  # past the second token's expiry: the session ends
        notice = await stream.expect("disconnect")
        assert (notice.disconnect.code, notice.disconnect.reason) == (16, "token expired")
        ended = await stream.ended
        assert ended is not None and ended.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("make_refused", "reason"),
    [
        (lambda clock: token(clock, lifetime=-1), "token_expired"),
        (lambda clock: token(clock, sub="someone-else"), "invalid_token"),
        (lambda clock: "not-a-jwt", "invalid_token"),
        (lambda clock: "", "missing_token"),
    ],
    ids=["expired", "other-subject", "malformed", "empty"],
)
async def test_refused_refresh_keeps_the_old_token(
    clock_and_server: tuple[ManualClock, SyncwireServer],
    transport: str,
    make_refused: object,
    reason: str,
) -> None:
    clock, server = clock_and_server
    async with session(server, transport, token(clock), "doc") as stream:
        answer = await refresh(stream, make_refused(clock))  # type: ignore[operator]
        assert answer.WhichOneof("kind") == "error"
        assert (answer.error.code, answer.error.reason_code) == (16, reason)
        # The stream carries on with its first token ...
        ack = await stream.publish("doc", b"still here")
        assert (await stream.expect("delta")).delta.offset == ack.offset
        # ... and still ends when that one expires.
        clock.advance(LIFETIME + 1)
        notice = await stream.expect("disconnect")
        assert notice.disconnect.reason == "token expired"


async def test_refresh_with_narrower_grants_ends_those_subscriptions(
    clock_and_server: tuple[ManualClock, SyncwireServer], transport: str
) -> None:
    clock, server = clock_and_server
    async with session(server, transport, token(clock), "kept", "revoked") as stream:
        answer = await refresh(stream, token(clock, subs=["kept"]))
        assert answer.WhichOneof("kind") == "token_refreshed"
        pushed = await stream.expect("error")
        assert pushed.request_id == 0
        assert (pushed.error.code, pushed.error.reason_code, pushed.error.collection_id) == (
            7,
            "forbidden",
            "revoked",
        )
        await stream.publish("revoked", b"not delivered to this session")
        await stream.publish("kept", b"delivered")
        delta = await stream.expect("delta")
        assert (delta.delta.collection_id, delta.delta.delta) == ("kept", b"delivered")
        assert not [r for r in stream.received if r.delta.collection_id == "revoked"]


async def test_refresh_without_authentication_is_accepted() -> None:
    async with running_server() as server, open_channel(server, "grpc") as channel:
        stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
        await stream.welcome()
        answer = await refresh(stream, "anything")
        assert answer.WhichOneof("kind") == "token_refreshed"
        assert not answer.token_refreshed.HasField("expires_at")
        await stream.close()
