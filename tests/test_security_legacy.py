"""Authentication and permissions for legacy JSON clients: the token rides in the
handshake (`?token=` or `Authorization: Bearer`), refusals close with 4401 / 4403."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from .legacy_ws_client import CLIENT_MAX_SIZE, LegacyClient
from .security_harness import OTHER_SECRET, SECRET, make_token
from .service_harness import running_server

AUDIENCE = "syncwire-tests"


def token(**claims: Any) -> str:
    return make_token(aud=AUDIENCE, **claims)


def with_token(url: str, jwt: str, room: str | None = None) -> str:
    query = f"token={quote(jwt)}" + (f"&room_id={room}" if room else "")
    return f"{url}/?{query}"


async def refused(url: str, headers: dict[str, str] | None = None) -> Close:
    """The close frame a legacy connection gets before any message."""
    async with connect(url, additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                message = await ws.recv()
                raise AssertionError(f"the connection was served: {message!r}")
    assert closed.value.rcvd is not None
    return closed.value.rcvd


async def open_with_header(url: str, jwt: str) -> LegacyClient:
    """A legacy client authenticated by its handshake's Authorization header."""
    ws = await connect(
        url, additional_headers={"Authorization": f"Bearer {jwt}"}, max_size=CLIENT_MAX_SIZE
    )
    client = LegacyClient(ws)
    client.welcome = await client.recv()
    assert client.welcome["type"] == "welcome", client.welcome
    client.peer_id = client.welcome["peer_id"]
    await client.expect_presence(client.peer_id, "connected")
    return client


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no token", "missing token"),
        ("empty token", "missing token"),
        ("bad signature", "invalid token: Signature verification failed"),
        ("expired", "token expired"),
        ("wrong audience", "invalid token: wrong audience"),
        ("other scheme", "invalid token: authorization must be 'Bearer <jwt>'"),
        ("repeated token", "invalid token: token is given more than once"),
    ],
)
async def test_refused_handshakes_close_with_4401(case: str, reason: str) -> None:
    async with running_server(
        auth_secret=SECRET, auth_audience=AUDIENCE, auth_leeway=0.0
    ) as server:
        url, headers = server.ws_url, None
        if case == "empty token":
            url = f"{url}/?token="
        elif case == "bad signature":
            url = with_token(url, make_token(OTHER_SECRET, aud=AUDIENCE))
        elif case == "expired":
            url = with_token(url, token(expires_in=-30))
        elif case == "wrong audience":
            url = with_token(url, make_token(aud="someone-else"))
        elif case == "other scheme":
            headers = {"Authorization": f"Token {token()}"}
        elif case == "repeated token":
            url = with_token(url, token()) + f"&token={token()}"
        close = await refused(url, headers)
        assert (close.code, close.reason) == (4401, reason)
        assert len(server.core.registry) == 0


async def test_home_collection_not_granted_closes_with_4403() -> None:
    async with running_server(auth_secret=SECRET, auth_audience=AUDIENCE) as server:
        close = await refused(with_token(server.ws_url, token(subs=["doc-*"]), room="lobby"))
        assert (close.code, close.reason) == (4403, "the token does not allow subscribe on 'lobby'")
        # The default collection is a name like any other.
        close = await refused(with_token(server.ws_url, token(subs=["doc-*"])))
        assert (close.code, close.reason) == (
            4403,
            "the token does not allow subscribe on 'default'",
        )
        assert len(server.core.registry) == 0


async def test_query_and_header_tokens_admit_and_forbidden_publishes_only_fail_themselves() -> None:
    async with running_server(auth_secret=SECRET, auth_audience=AUDIENCE) as server:
        reader = await LegacyClient.open(
            with_token(server.ws_url, token(subs=["lobby"], pubs=[]), room="lobby")
        )
        writer = await open_with_header(
            f"{server.ws_url}/?room_id=lobby", token(subs=["lobby"], pubs=["lob*"])
        )
        await reader.expect_presence(writer.peer_id, "connected")
        await reader.send_text('{"type":"sync","data":{"n":1}}')
        error = await reader.recv()
        assert (error["type"], error["code"]) == ("error", "forbidden")
        assert error["reason"] == "the token does not allow publish on 'lobby'"
        await reader.send_binary(b"still here")
        ack = await reader.recv()
        assert (ack["type"], ack["size"]) == ("binary_ack", 10)
        data = await writer.probe()
        await writer.expect_probe(data, writer.peer_id)
        await reader.expect_probe(data, writer.peer_id)
        await reader.ws.close()
        await writer.ws.close()


async def test_a_legacy_session_is_closed_when_its_token_expires() -> None:
    async with running_server(
        auth_secret=SECRET, auth_audience=AUDIENCE, auth_leeway=0.0
    ) as server:
        client = await LegacyClient.open(with_token(server.ws_url, token(expires_in=1.0)))
        close = await client.closed()
        assert (close.code, close.reason) == (4401, "token expired")


async def test_tokens_in_the_url_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    jwt = token()
    async with running_server(auth_secret=SECRET, auth_audience=AUDIENCE) as server:
        with caplog.at_level(logging.WARNING, logger="server.legacy_gateway.gateway"):
            close = await refused(f"{server.ws_url}/?room_id=bad!&token={jwt}")
        assert close.code == 1008
    paths = [getattr(record, "path", "") for record in caplog.records]
    assert any("token=REDACTED" in path for path in paths), paths
    assert not any(
        jwt in record.getMessage() or jwt in str(record.__dict__) for record in caplog.records
    )
