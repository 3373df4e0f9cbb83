"""What the framing gives clients that are not Python (browsers): ConnectionSettings
first on call 0, call-0 Ping/Pong both ways, refusals readable after the handshake, and
the Origin allow-list; and that clients from before settings and pings keep working.

The browser is played by the ``websockets`` client itself: it sends an ``Origin``,
offers subprotocols, never sends WebSocket control pings (``ping_interval=None``) and,
as a browser's network stack does, answers the server's control pings by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from client._ws_connection import ClientConnectionDriver
from client.ws_channel import WebSocketChannel
from server.__main__ import build_parser
from server.app import SyncwireServer
from server.config import ConfigError, ServerConfig, load_config
from server.ws.origin import OriginPolicy
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from syncwire.ws.v1 import frame_pb2
from wire.codec import decode_batch, encode_record
from wire.events import PeerProtocolError, PongReceived, SettingsReceived
from wire.mux import INITIAL_WINDOW, ClientMultiplexer, MessageTooLargeError, ServerMultiplexer
from wire.protocol import KEEPALIVE_TIMEOUT, SUBPROTOCOL_PROTOBUF

from .service_harness import running_server
from .tcp_proxy import Direction, TcpProxy

pytestmark = pytest.mark.timeout(60)

PROTOBUF = [Subprotocol(SUBPROTOCOL_PROTOBUF)]
INFO = "/syncwire.v1.SyncService/GetServerInfo"
PUBLISH = "/syncwire.v1.SyncService/Publish"


def _same_host(server: SyncwireServer) -> str:
    return f"http://127.0.0.1:{server.ws_port}"


@contextlib.asynccontextmanager
async def browser(
    url: str, origin: str, subprotocols: list[Subprotocol] | None = None
) -> AsyncIterator[ClientConnection]:
    """A connection as a browser page at ``origin`` opens it."""
    async with connect(
        url,
        origin=Origin(origin),
        subprotocols=(PROTOBUF if subprotocols is None else subprotocols) or None,
        ping_interval=None,
    ) as ws:
        yield ws


async def _frames(ws: ClientConnection) -> list[frame_pb2.Frame]:
    message = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(message, bytes)
    return list(frame_pb2.FrameBatch.FromString(message).frames)


async def _close_of(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    close = closed.value.rcvd
    assert close is not None
    return close.code, close.reason


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Polls state the code under test exposes no event for."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - no event exists for these conditions
            await asyncio.sleep(0.01)


def _frame(**kind: Any) -> bytes:
    return encode_record(frame_pb2.Frame(call_id=0, **kind))


# ------------------------------------------------------------------ ConnectionSettings


async def test_settings_are_the_first_frame_and_state_the_limits() -> None:
    async with running_server(max_message_bytes=4096) as server:
        async with browser(server.ws_url, _same_host(server)) as ws:
            (first,) = await _frames(ws)
    assert first.call_id == 0 and first.WhichOneof("kind") == "settings"
    settings = first.settings
    assert settings.max_message_bytes == 4096
    assert (settings.ping_interval.seconds, settings.ping_timeout.seconds) == (20, 20)
    assert settings.server_id == server.core.server_id
    assert settings.initial_window_bytes == INITIAL_WINDOW == 256 * 1024
    assert settings.max_concurrent_calls == 1000  # --max-concurrent-calls


async def test_the_python_end_takes_the_servers_limit_from_the_settings() -> None:
    async with running_server(max_message_bytes=2048) as server:
        async with connect(server.ws_url, subprotocols=PROTOBUF) as ws:
            # Built without a send limit, as a client that cannot read the handshake's
            # syncwire-max-message-bytes header: only the settings frame can tell it.
            connection = ClientConnectionDriver(
                ws,
                max_receive_bytes=None,
                max_send_bytes=None,
                send_buffer_bytes=65536,
                on_closed=lambda _: None,
            )
            connection.start()
            await _until(lambda: connection.settings is not None)
            assert connection.mux.max_send_bytes == 2048
            call_id = connection.start_call(PUBLISH, None, 10.0, _NoSink())
            with pytest.raises(MessageTooLargeError, match=r"2049 vs\. 2048"):
                await connection.send_message(call_id, b"x" * 2049, asyncio.Event())
            await connection.close()


class _NoSink:
    def on_headers(self, metadata: grpc.aio.Metadata) -> None:
        pass

    def on_message(self, payload: bytes) -> None:
        pass

    def on_window_opened(self) -> None:
        pass

    def on_end(self, code: grpc.StatusCode, details: str, trailers: grpc.aio.Metadata) -> None:
        pass


def test_multiplexers_handle_the_call_0_frames() -> None:
    client = ClientMultiplexer(max_send_bytes=10_000)
    settings = frame_pb2.ConnectionSettings(max_message_bytes=500)
    (event,) = client.receive(_frame(settings=settings))
    assert event == SettingsReceived(settings) and client.max_send_bytes == 500
    # A client never sends settings; the server reports it and carries on.
    server = ServerMultiplexer()
    (discarded,) = server.receive(_frame(settings=settings))
    assert "sent by servers only" in discarded.details  # type: ignore[union-attr]
    # One Pong per WebSocket message, answering its last Ping.
    events = server.receive(
        _frame(ping=frame_pb2.Ping(nonce=1)) + _frame(ping=frame_pb2.Ping(nonce=2))
    )
    assert events == []
    replies = [
        f for f in decode_batch(server.data_to_send() or b"") if isinstance(f, frame_pb2.Frame)
    ]
    assert [f.pong.nonce for f in replies if f.HasField("pong")] == [2]
    # A Pong is reported; a call-0 frame of a kind this version does not know is ignored.
    assert client.receive(_frame(pong=frame_pb2.Pong(nonce=7))) == [PongReceived(7)]
    unknown = b"\x0a\x04\x08\x00\x72\x00"  # Frame{call_id: 0, field 14: empty}
    assert client.receive(unknown) == [] and client.data_to_send() is None


def test_no_pong_is_queued_for_a_peer_that_does_not_read() -> None:
    server = ServerMultiplexer(batch_bytes=1024)
    server.write_queue.push(b"x" * 2048)  # more than a batch already waits
    assert server.receive(_frame(ping=frame_pb2.Ping(nonce=1))) == []
    assert server.write_queue.pending_bytes == 2048


# ------------------------------------------------------------------ keepalive


async def test_the_server_answers_a_browsers_ping() -> None:
    async with running_server() as server:
        async with browser(server.ws_url, _same_host(server)) as ws:
            await _frames(ws)  # settings
            await ws.send(_frame(ping=frame_pb2.Ping(nonce=2**64 - 1)))
            (pong,) = await _frames(ws)
            assert pong.call_id == 0 and pong.pong.nonce == 2**64 - 1


async def test_a_browser_that_answers_pings_stays_and_a_silent_one_is_dropped() -> None:
    async with running_server(ws_ping_interval=0.2, ws_ping_timeout=2.0) as server:
        async with browser(server.ws_url, _same_host(server)) as answering:
            pings = 0
            while pings < 3:  # three rounds of the server's keepalive, answered
                for frame in await _frames(answering):
                    if frame.HasField("ping"):
                        pings += 1
                        await answering.send(_frame(pong=frame_pb2.Pong(nonce=frame.ping.nonce)))
            await answering.send(_frame(ping=frame_pb2.Ping(nonce=9)))
            frames: list[frame_pb2.Frame] = []
            while not any(f.HasField("pong") for f in frames):
                frames = await _frames(answering)
        # This page's network stack answers WebSocket pings, but its script never
        # answers a Ping: the server drops it, and its calls end.
        async with browser(server.ws_url, _same_host(server)) as silent:
            call = frame_pb2.Frame(
                call_id=1, start=frame_pb2.CallStart(method="/syncwire.v1.SyncService/Sync")
            )
            await silent.send(encode_record(call))
            await _until(lambda: sum(d.call_count for d in server.ws_server.connections) == 1)
            assert await _close_of(silent) == (1011, KEEPALIVE_TIMEOUT)
        await _until(lambda: not server.ws_server.connections)


async def test_a_client_from_before_settings_keeps_working_and_gets_no_pings() -> None:
    """Plays the client of the previous release, whose multiplexer answered every call-0
    frame other than protocol_error with a ProtocolError "frame kind '<kind>' is not
    valid on call 0" and logged it."""
    async with running_server(ws_ping_interval=5.0, ws_ping_timeout=5.0) as server:
        async with connect(server.ws_url, subprotocols=PROTOBUF) as old:
            (settings,) = await _frames(old)
            error = frame_pb2.ProtocolError(
                code=3, details="frame kind 'settings' is not valid on call 0"
            )
            (driver,) = server.ws_server.connections
            assert driver.keepalive_active  # pings for new clients
            await old.send(_frame(protocol_error=error))
            await _until(lambda: not driver.keepalive_active)
            start = frame_pb2.Frame(call_id=1, start=frame_pb2.CallStart(method=INFO))
            message = frame_pb2.Frame(call_id=1, message=frame_pb2.CallMessage(payload=b""))
            half = frame_pb2.Frame(call_id=1, half_close=frame_pb2.CallHalfClose())
            await old.send(b"".join(encode_record(f) for f in (start, message, half)))
            kinds: list[str] = []
            while "end" not in kinds:
                kinds += [str(f.WhichOneof("kind")) for f in await _frames(old)]
            assert "ping" not in kinds and "protocol_error" not in kinds
            assert kinds[-1] == "end" and "message" in kinds
        assert settings.settings.max_message_bytes > 0


async def test_the_python_channel_keeps_alive_with_call_0_pings() -> None:
    async with running_server(ws_ping_interval=0.2, ws_ping_timeout=2.0) as server:
        async with WebSocketChannel(server.ws_url, app_ping=True) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            await stub.GetServerInfo(sync_pb2.GetServerInfoRequest(), timeout=10)
            connection = channel._connection
            assert connection is not None and connection.keepalive_active
            # The channel pings at the server's pace (0.2 s from the settings, not its
            # own 20 s) and the server answers.
            await _until(lambda: connection.mux.pongs_received >= 3)
            assert channel._connection is connection
            await stub.GetServerInfo(sync_pb2.GetServerInfoRequest(), timeout=10)


async def test_the_python_channel_detects_a_silent_server_by_call_0_ping() -> None:
    async with running_server(ws_ping_interval=0.5, ws_ping_timeout=1.0) as server:
        async with TcpProxy("127.0.0.1", server.ws_port) as proxy:
            channel = WebSocketChannel(f"ws://{proxy.address}", app_ping=True)
            async with channel:
                stub = sync_pb2_grpc.SyncServiceStub(channel)
                stream = stub.Sync(None)
                # A heartbeat opens the stream and gets no reply: after the welcome
                # nothing is owed to the client that could arrive before the stall.
                await stream.write(sync_pb2.SyncRequest(heartbeat=types_pb2.Heartbeat()))
                await stream.read()  # welcome
                proxy.stall(Direction.BOTH)  # half-open: nothing passes, nothing closes
                with pytest.raises(grpc.aio.AioRpcError) as lost:
                    await asyncio.wait_for(stream.read(), 10)
                assert lost.value.code() is grpc.StatusCode.UNAVAILABLE
                assert lost.value.details() == KEEPALIVE_TIMEOUT


# ------------------------------------------------------------------ origins and refusals


@pytest.mark.parametrize("subprotocols", [PROTOBUF, []], ids=["typed", "legacy"])
async def test_a_page_from_another_site_is_refused_with_a_reason(
    subprotocols: list[Subprotocol],
) -> None:
    async with running_server() as server:
        async with browser(server.ws_url, "https://evil.example", subprotocols) as ws:
            assert await _close_of(ws) == (1008, "origin not allowed: https://evil.example")
        async with browser(server.ws_url, _same_host(server), subprotocols) as ws:
            first = await asyncio.wait_for(ws.recv(), 10)  # settings, or the legacy welcome
            assert first


async def test_allowed_origins_are_glob_patterns() -> None:
    async with running_server(
        allowed_origins="https://*.example.com, http://localhost:*"
    ) as server:
        for origin in ("https://app.example.com", "http://localhost:5173"):
            async with browser(server.ws_url, origin) as ws:
                (settings,) = await _frames(ws)
                assert settings.HasField("settings")
        for origin in ("https://example.org", "http://app.example.com", "null"):
            async with browser(server.ws_url, origin) as ws:
                assert await _close_of(ws) == (1008, f"origin not allowed: {origin}")
        # Clients that send no Origin are not browsers and are not affected.
        async with WebSocketChannel(server.ws_url) as channel:
            info = await sync_pb2_grpc.SyncServiceStub(channel).GetServerInfo(
                sync_pb2.GetServerInfoRequest(), timeout=10
            )
            assert info.HasField("server_info")


async def test_browsers_read_limit_refusals_as_close_codes() -> None:
    async with running_server(max_connections=1) as server:
        async with browser(server.ws_url, _same_host(server)) as held:
            await _frames(held)
            async with browser(server.ws_url, _same_host(server)) as ws:
                assert await _close_of(ws) == (1013, "too many connections")
            with pytest.raises(InvalidStatus) as refused:  # not a browser: HTTP 503
                async with connect(server.ws_url, subprotocols=PROTOBUF):
                    pass
            assert refused.value.response.status_code == 503
    async with running_server(max_connections_per_address=1) as server:
        async with browser(server.ws_url, _same_host(server)) as held:
            await _frames(held)
            async with browser(server.ws_url, _same_host(server)) as ws:
                assert await _close_of(ws) == (1013, "too many connections from your address")


async def test_a_browser_offering_an_unknown_subprotocol_reads_why() -> None:
    async with running_server() as server:
        offered = [Subprotocol("graphql-ws"), Subprotocol("other")]
        async with browser(server.ws_url, _same_host(server), offered) as ws:
            # Echoed, or a browser would fail the connection (1006) before any reason.
            assert ws.subprotocol == "graphql-ws"
            code, reason = await _close_of(ws)
            assert code == 1002 and reason == (
                "unsupported subprotocol graphql-ws, other; offer syncwire-protobuf"
            )


def test_origin_policy_same_host_and_patterns() -> None:
    default = OriginPolicy()
    assert default.refusal(None, "a.example") is None  # no Origin: not a browser
    assert default.refusal("https://a.example", "a.example") is None
    assert default.refusal("https://a.example", "a.example:443") is None
    assert default.refusal("http://[::1]:8080", "[::1]:8080") is None
    assert default.refusal("https://a.example:8443", "a.example") is not None
    assert (
        default.refusal("https://b.example", "a.example") == "origin not allowed: https://b.example"
    )
    anything = OriginPolicy(["*"])
    assert anything.refusal("https://b.example", "a.example") is None


def test_allowed_origins_from_flags_environment_and_toml(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--allowed-origins", "https://a.example"])
    assert load_config(args, {}).origin_patterns == ("https://a.example",)
    env = {"SYNCWIRE_ALLOWED_ORIGINS": "https://a.example https://*.b.example"}
    assert load_config(build_parser().parse_args([]), env).origin_patterns == (
        "https://a.example",
        "https://*.b.example",
    )
    toml = tmp_path / "syncwire.toml"
    toml.write_text('allowed_origins = ["https://a.example", "http://localhost:*"]\n')
    config = load_config(build_parser().parse_args(["--config", str(toml)]), {})
    assert config.origin_patterns == ("https://a.example", "http://localhost:*")
    assert ServerConfig().origin_patterns == ()  # default: the server's own host only
    with pytest.raises(ConfigError, match=r"invalid allowed_origins = 'a\.example'"):
        ServerConfig(allowed_origins="a.example")
    with pytest.raises(ConfigError, match="no path"):
        ServerConfig(allowed_origins="https://a.example/app")


def test_peer_protocol_errors_other_than_the_old_discard_are_not_taken_as_old_peers() -> None:
    # The new multiplexer words its own call-0 discards differently, so a new peer is
    # never mistaken for an old one.
    server, client = ServerMultiplexer(), ClientMultiplexer()
    server.receive(_frame(start=frame_pb2.CallStart(method="/a")))
    (event,) = client.receive(server.data_to_send() or b"")
    assert isinstance(event, PeerProtocolError)
    assert not event.details.endswith("is not valid on call 0")
