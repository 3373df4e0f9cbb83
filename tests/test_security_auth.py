"""JWT authentication and per-collection permissions over native gRPC and the WebSocket
framing: every rejection path with its exact status, on the Sync stream and unary calls."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.ws_channel import WebSocketChannel
from server.app import SyncwireServer
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from wire.status import REASON_CODE_METADATA_KEY

from .security_harness import (
    OTHER_SECRET,
    SECRET,
    bearer,
    ec_key,
    make_token,
    rsa_key,
    trailer,
    write_public_key,
)
from .service_harness import TRANSPORTS, SyncStream, open_channel, poll_until, running_server

AUDIENCE = "syncwire-tests"
Metadata = tuple[tuple[str, str], ...]


def token(**claims: Any) -> str:
    """A valid token for the test server (right secret and audience)."""
    return make_token(aud=AUDIENCE, **claims)


def _unsigned_part(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def hs256_signed_with(key: bytes) -> str:
    """A token HMAC-signed with `key` by hand (pyjwt refuses to use a PEM key as an HMAC
    secret): the algorithm-confusion attack on servers that trust the header's alg."""
    header = _unsigned_part({"alg": "HS256", "typ": "JWT"})
    payload = _unsigned_part({"sub": "mallory", "exp": time.time() + 60, "aud": AUDIENCE})
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


# (metadata, status details, reason code): every way a call can lack a valid token.
REJECTIONS: dict[str, tuple[Callable[[], Metadata], str, str]] = {
    "no token": (lambda: (), "missing token", "missing_token"),
    "empty bearer": (lambda: (("authorization", "Bearer "),), "missing token", "missing_token"),
    "bad signature": (
        lambda: bearer(make_token(OTHER_SECRET, aud=AUDIENCE)),
        "invalid token: Signature verification failed",
        "invalid_token",
    ),
    "malformed": (
        lambda: bearer("not-a-jwt"),
        "invalid token: Not enough segments",
        "invalid_token",
    ),
    "other scheme": (
        lambda: (("authorization", "Basic dXNlcjpwYXNz"),),
        "invalid token: authorization must be 'Bearer <jwt>'",
        "invalid_token",
    ),
    "expired": (lambda: bearer(token(expires_in=-30)), "token expired", "token_expired"),
    "not yet valid": (
        lambda: bearer(token(nbf=time.time() + 60)),
        "invalid token: The token is not yet valid (nbf)",
        "invalid_token",
    ),
    "wrong audience": (
        lambda: bearer(make_token(aud="another-service")),
        "invalid token: wrong audience",
        "invalid_token",
    ),
    "no audience": (
        lambda: bearer(make_token()),
        'invalid token: Token is missing the "aud" claim',
        "invalid_token",
    ),
    "no exp": (
        lambda: bearer(_no_exp_token()),
        'invalid token: Token is missing the "exp" claim',
        "invalid_token",
    ),
    "claim not a list": (
        lambda: bearer(token(sub_collections="doc:*")),
        "invalid token: sub_collections must be a list of strings",
        "invalid_token",
    ),
}


def _no_exp_token() -> str:
    import jwt

    return jwt.encode({"sub": "x", "aud": AUDIENCE}, SECRET, algorithm="HS256")


async def sync_refusal(channel: grpc.aio.Channel, metadata: Metadata) -> grpc.aio.AioRpcError:
    """The status a Sync stream opened with `metadata` ends with, before any response."""
    stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel), metadata=metadata or None)
    try:
        error = await asyncio.wait_for(stream.ended, 5)
    finally:
        await stream.close()
    assert error is not None, "the stream was accepted"
    assert stream.received == []
    return error


async def unary_refusal(
    stub: sync_pb2_grpc.SyncServiceAsyncStub, metadata: Metadata, call: str = "Publish"
) -> grpc.aio.AioRpcError:
    requests: dict[str, Any] = {
        "Publish": sync_pb2.PublishRequest(
            delta=types_pb2.Delta(collection_id="doc:1", delta=b"x")
        ),
        "GetHistory": sync_pb2.GetHistoryRequest(collection_id="doc:1"),
        "GetPresence": sync_pb2.GetPresenceRequest(collection_id="doc:1"),
        "GetServerInfo": sync_pb2.GetServerInfoRequest(),
    }
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await getattr(stub, call)(requests[call], metadata=metadata or None, timeout=5)
    return refused.value


@pytest.mark.parametrize("case", list(REJECTIONS))
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_calls_without_a_valid_token_are_unauthenticated(transport: str, case: str) -> None:
    metadata_of, details, reason = REJECTIONS[case]
    metadata = metadata_of()
    async with running_server(
        auth_secret=SECRET, auth_audience=AUDIENCE, auth_leeway=0.0
    ) as server:
        async with open_channel(server, transport) as channel:
            refused = await sync_refusal(channel, metadata)
            assert (refused.code(), refused.details()) == (grpc.StatusCode.UNAUTHENTICATED, details)
            assert trailer(refused, REASON_CODE_METADATA_KEY) == reason
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            for call in ("Publish", "GetHistory", "GetPresence", "GetServerInfo"):
                refused = await unary_refusal(stub, metadata, call)
                assert (refused.code(), refused.details()) == (
                    grpc.StatusCode.UNAUTHENTICATED,
                    details,
                ), call
            # The refusals admitted no session and are counted by reason; a valid token
            # still works on the channel.
            assert len(server.core.registry) == 0
            assert server.core.metrics.request_errors.labels(reason)._value.get() == 5
            info = await stub.GetServerInfo(
                sync_pb2.GetServerInfoRequest(), metadata=bearer(token()), timeout=5
            )
            assert info.server_info.server_id == server.core.server_id


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_forbidden_collections_fail_only_that_request(transport: str) -> None:
    grant = bearer(token(subs=["doc:*", "lobby"], pubs=["doc:*"]))
    async with running_server(auth_secret=SECRET, auth_audience=AUDIENCE) as server:
        async with open_channel(server, transport) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            stream = SyncStream(stub, metadata=grant)
            await stream.welcome()
            refused = await stream.expect_reply(
                stream.send(subscribe=sync_pb2.Subscribe(collection_id="secret"))
            )
            error = refused.error
            assert (error.code, error.reason_code, error.collection_id) == (
                grpc.StatusCode.PERMISSION_DENIED.value[0],
                "forbidden",
                "secret",
            )
            assert error.message == "the token does not allow subscribe on 'secret'"
            assert (await stream.subscribe("doc:1")).collection_id == "doc:1"
            assert (await stream.subscribe("lobby")).collection_id == "lobby"
            refused = await stream.expect_reply(
                stream.send(
                    publish=sync_pb2.Publish(
                        delta=types_pb2.Delta(collection_id="lobby", delta=b"x")
                    )
                )
            )
            assert (refused.error.code, refused.error.reason_code) == (
                grpc.StatusCode.PERMISSION_DENIED.value[0],
                "forbidden",
            )
            assert (await stream.publish("doc:1", b"allowed")).offset == 1
            assert not stream.ended.done()
            await stream.close()

            for call, collection in (("Publish", "lobby"), ("GetHistory", "secret")):
                request: Any = (
                    sync_pb2.PublishRequest(
                        delta=types_pb2.Delta(collection_id=collection, delta=b"x")
                    )
                    if call == "Publish"
                    else sync_pb2.GetHistoryRequest(collection_id=collection)
                )
                with pytest.raises(grpc.aio.AioRpcError) as denied:
                    await getattr(stub, call)(request, metadata=grant, timeout=5)
                assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED, call
                assert trailer(denied.value, REASON_CODE_METADATA_KEY) == "forbidden"
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.GetPresence(
                    sync_pb2.GetPresenceRequest(collection_id="secret"), metadata=grant, timeout=5
                )
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            history = await stub.GetHistory(
                sync_pb2.GetHistoryRequest(collection_id="doc:1"), metadata=grant, timeout=5
            )
            assert [d.delta for d in history.deltas] == [b"allowed"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_session_ends_when_its_token_expires(transport: str) -> None:
    async with running_server(
        auth_secret=SECRET, auth_audience=AUDIENCE, auth_leeway=0.0
    ) as server:
        async with open_channel(server, transport) as channel:
            stream = SyncStream(
                sync_pb2_grpc.SyncServiceStub(channel), metadata=bearer(token(expires_in=1.0))
            )
            await stream.welcome()
            await stream.subscribe("doc:1")
            disconnect = (await stream.expect("disconnect")).disconnect
            assert (disconnect.code, disconnect.reason) == (
                grpc.StatusCode.UNAUTHENTICATED.value[0],
                "token expired",
            )
            ended = await asyncio.wait_for(stream.ended, 5)
            assert ended is not None
            assert (ended.code(), ended.details()) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "token expired",
            )
            await stream.close()
            # The session's release runs after the stream ends (asynchronously).
            await poll_until(lambda: len(server.core.registry) == 0, "the session released")
            assert server.core.metrics.disconnects.labels("token_expired")._value.get() == 1


async def test_websocket_handshake_authorization_is_the_default_for_calls() -> None:
    async with running_server(auth_secret=SECRET, auth_audience=AUDIENCE) as server:
        headers = {"authorization": f"Bearer {token(subs=['doc:*'])}"}
        async with WebSocketChannel(server.ws_url, headers=headers) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            stream = SyncStream(stub)
            await stream.welcome()
            assert (await stream.subscribe("doc:1")).collection_id == "doc:1"
            await stream.close()
            # A call's own authorization wins over the handshake's.
            refused = await unary_refusal(stub, bearer(make_token(OTHER_SECRET, aud=AUDIENCE)))
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
async def test_public_key_verification(tmp_path: Path, kind: str) -> None:
    private = rsa_key() if kind == "RS256" else ec_key()
    key_file = write_public_key(private, tmp_path / "jwt-public.pem")
    async with running_server(auth_public_key=str(key_file), auth_audience=AUDIENCE) as server:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            good = make_token(private, algorithm=kind, aud=AUDIENCE)
            await stub.GetServerInfo(sync_pb2.GetServerInfoRequest(), metadata=bearer(good))
            wrong_key = make_token(rsa_key() if kind == "RS256" else ec_key(), algorithm=kind)
            forged = hs256_signed_with(key_file.read_bytes())
            for bad in (wrong_key, forged, token()):
                refused = await unary_refusal(stub, bearer(bad), "GetServerInfo")
                assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
                assert (refused.details() or "").startswith("invalid token")


async def test_health_checks_need_no_token() -> None:
    async with running_server(auth_secret=SECRET) as server:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_auth_is_off_by_default() -> None:
    async with running_server() as server:
        assert server.core.authenticator is None
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
            await stream.welcome()
            assert (await stream.publish("anything", b"x")).offset == 1
            await stream.close()


def test_server_with_an_unusable_public_key_refuses_to_start(tmp_path: Path) -> None:
    from server.config import ConfigError

    from .service_harness import test_config

    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ConfigError, match="is not a PEM public key"):
        SyncwireServer(test_config(auth_public_key=str(not_a_key)))
