"""Limits and failure handling of the WebSocket framing, over real loopback sockets."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf.wrappers_pb2 import Int32Value
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from client.ws_channel import WebSocketChannel
from server.ws import WebSocketServer
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from syncwire.ws.v1 import frame_pb2
from tests.ws_testing import running_servers
from wire.codec import encode_message_record, encode_record, encode_varint
from wire.deflate import DeflateSettings
from wire.events import CallEnded, Event, MessageReceived, PeerProtocolError
from wire.mux import ClientMultiplexer

PROTOBUF = [Subprotocol("syncwire-protobuf")]
SYNC = "/syncwire.v1.SyncService/Sync"
PUBLISH = "/syncwire.v1.SyncService/Publish"


def _blob(request_id: int, data: bytes = b"x") -> bytes:
    return sync_pb2.SyncRequest(
        request_id=request_id, blob=sync_pb2.Blob(data=data)
    ).SerializeToString()


async def _until(
    ws: ClientConnection, mux: ClientMultiplexer, done: Callable[[list[Event]], bool]
) -> list[Event]:
    """Flushes what the mux queued, then collects events until ``done`` says so."""
    while (batch := mux.data_to_send()) is not None:
        await ws.send(batch)
    events: list[Event] = []
    while not done(events):
        events += mux.receive(await asyncio.wait_for(ws.recv(), 5))
    return events


def _ended(call_id: int) -> Callable[[list[Event]], bool]:
    return lambda events: any(isinstance(e, CallEnded) and e.call_id == call_id for e in events)


def _end_of(events: list[Event], call_id: int) -> CallEnded:
    return next(e for e in events if isinstance(e, CallEnded) and e.call_id == call_id)


async def test_oversize_request_fails_only_its_call_at_the_client() -> None:
    async with running_servers(max_message_bytes=1024) as servers:
        stub = sync_pb2_grpc.SyncServiceStub(servers.channel("ws"))
        stream = stub.Sync(None)
        await stream.write(sync_pb2.SyncRequest(request_id=1, blob=sync_pb2.Blob(data=b"a")))
        await stream.read()
        request = sync_pb2.PublishRequest(delta=types_pb2.Delta(delta=b"x" * 2000))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Publish(request)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in (info.value.details() or "")
        await stream.write(sync_pb2.SyncRequest(request_id=2, blob=sync_pb2.Blob(data=b"b")))
        reply = await stream.read()
        assert isinstance(reply, sync_pb2.SyncResponse) and reply.request_id == 2


async def test_oversize_request_fails_only_its_call_at_the_server() -> None:
    async with running_servers(max_message_bytes=1024) as servers:
        async with connect(servers.ws_url, subprotocols=PROTOBUF) as ws:
            mux = ClientMultiplexer()  # ignores the server's announced limit on purpose
            stream = mux.start(SYNC, None, None)
            mux.send_message(stream, _blob(1))
            big = mux.start(PUBLISH, None, None)
            mux.send_message(big, b"\x0a" + encode_varint(2000) + b"x" * 2000)
            mux.half_close(big)
            events = await _until(ws, mux, _ended(big))
            end = _end_of(events, big)
            assert end.code is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert end.details.startswith("Received message larger than max (20")
            mux.send_message(stream, _blob(2))
            events = await _until(
                ws, mux, lambda ev: any(isinstance(e, MessageReceived) for e in ev)
            )
            (reply,) = [e for e in events if isinstance(e, MessageReceived)]
            assert (
                reply.call_id == stream
                and sync_pb2.SyncResponse.FromString(reply.payload).request_id == 2
            )


async def test_response_over_the_clients_limit_fails_only_that_call() -> None:
    async with running_servers() as servers:
        stub = sync_pb2_grpc.SyncServiceStub(servers.channel("ws", max_receive_message_bytes=200))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetPresence(sync_pb2.GetPresenceRequest(collection_id="c" * 500))
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        small = await stub.GetPresence(sync_pb2.GetPresenceRequest(collection_id="ok"))
        assert small.collection_id == "ok"


async def test_malformed_frames_fail_their_call_and_others_carry_on() -> None:
    async with running_servers() as servers:
        async with connect(servers.ws_url, subprotocols=PROTOBUF) as ws:
            mux = ClientMultiplexer()
            stream = mux.start(SYNC, None, None)
            mux.send_message(stream, _blob(1))
            await _until(ws, mux, lambda ev: any(isinstance(e, MessageReceived) for e in ev))
            # Call 3's start has a method that is not UTF-8; a message names call 99, never
            # started; call 1 gets a valid message in the same WebSocket message.
            body = frame_pb2.Frame(
                call_id=3, start=frame_pb2.CallStart(method="/a")
            ).SerializeToString()
            body = body.replace(b"/a", b"/\xff")
            corrupt = b"\x0a" + encode_varint(len(body)) + body
            await ws.send(
                corrupt + encode_message_record(99, b"") + encode_message_record(stream, _blob(2))
            )
            events = await _until(
                ws,
                mux,
                lambda ev: (
                    any(isinstance(e, MessageReceived) for e in ev)
                    and any(isinstance(e, PeerProtocolError) for e in ev)
                ),
            )
            (reply,) = [e for e in events if isinstance(e, MessageReceived)]
            assert sync_pb2.SyncResponse.FromString(reply.payload).request_id == 2
            (report,) = [e for e in events if isinstance(e, PeerProtocolError)]
            assert report.details == "message frame for call 99, which was never started"
            # The end for call 3 arrived before: the client never started it, so it is
            # dropped silently by the mux; read it from the wire instead.
            await ws.send(
                encode_record(frame_pb2.Frame(call_id=5, start=frame_pb2.CallStart(method="/a")))
            )
            raw = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(raw, bytes)
            end = frame_pb2.FrameBatch.FromString(raw).frames[0]
            assert end.call_id == 5 and end.end.code == grpc.StatusCode.UNIMPLEMENTED.value[0]


async def test_malformed_start_is_answered_with_invalid_argument() -> None:
    async with running_servers() as servers:
        async with connect(servers.ws_url, subprotocols=PROTOBUF) as ws:
            body = frame_pb2.Frame(
                call_id=1, start=frame_pb2.CallStart(method="/a")
            ).SerializeToString()
            first = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(first, bytes)  # the server's ConnectionSettings come first
            assert frame_pb2.FrameBatch.FromString(first).frames[0].HasField("settings")
            await ws.send(b"\x0a" + encode_varint(len(body)) + body.replace(b"/a", b"/\xff"))
            raw = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(raw, bytes)
            (end,) = frame_pb2.FrameBatch.FromString(raw).frames
            assert end.call_id == 1 and end.end.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert "UTF-8" in end.end.details


async def _close_of(url: str, **options: Any) -> tuple[int | None, str]:
    async with connect(url, **options) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
    close = info.value.rcvd
    return (close.code, close.reason) if close else (None, "")


async def test_subprotocol_negotiation_refuses_or_hands_over_to_the_legacy_handler() -> None:
    async with running_servers() as servers:
        code, reason = await _close_of(servers.ws_url)
        assert code == 1008 and "offer syncwire-protobuf" in reason
        code, reason = await _close_of(servers.ws_url, subprotocols=[Subprotocol("graphql-ws")])
        assert code == 1002 and "graphql-ws" in reason

    async def legacy(connection: ServerConnection) -> None:
        await connection.send('{"type":"welcome"}')

    server = WebSocketServer(legacy_handler=legacy)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            assert ws.subprotocol is None
            assert await asyncio.wait_for(ws.recv(), 5) == '{"type":"welcome"}'
    finally:
        await server.stop(None)


async def test_connections_over_the_limit_get_http_503() -> None:
    async with running_servers(max_connections=1) as servers:
        async with connect(servers.ws_url, subprotocols=PROTOBUF):
            with pytest.raises(InvalidStatus) as info:
                async with connect(servers.ws_url, subprotocols=PROTOBUF):
                    pass
            assert info.value.response.status_code == 503


@pytest.mark.parametrize("compression", [True, False])
async def test_permessage_deflate_is_negotiated_when_enabled(compression: bool) -> None:
    async with running_servers(compression=compression) as servers:
        async with connect(servers.ws_url, subprotocols=PROTOBUF) as ws:
            assert ws.response is not None
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert ("permessage-deflate" in extensions) is compression
            assert ws.response.headers["syncwire-max-message-bytes"] == str(1024 * 1024)


async def test_deflate_window_and_mem_level_are_the_configured_ones() -> None:
    settings = DeflateSettings(window_bits=9, mem_level=2)
    async with running_servers(compression=settings) as servers:
        async with connect(servers.ws_url, subprotocols=PROTOBUF) as ws:
            assert ws.response is not None
            extensions = ws.response.headers["Sec-WebSocket-Extensions"]
            assert "server_max_window_bits=9" in extensions
            assert "client_max_window_bits=9" in extensions
            await _wait_for(lambda: bool(servers.ws_server.connections))
            transport: Any = servers.ws_server.connections[0]._transport
            (deflate,) = transport.protocol.extensions  # what the server compresses with
            assert deflate.local_max_window_bits == 9
            assert deflate.compress_settings == {"memLevel": 2}
    with pytest.raises(ValueError, match="window bits"):
        DeflateSettings(window_bits=16)
    with pytest.raises(ValueError, match="memLevel"):
        DeflateSettings(mem_level=0)


async def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Polls a condition the code under test exposes no event for."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - no event exists for these conditions
            await asyncio.sleep(0.01)


@pytest.mark.timeout(30)
async def test_a_slow_reader_makes_the_servicer_wait_instead_of_growing_memory() -> None:
    produced = 0
    chunk = b"z" * 16384

    async def flood(request: Int32Value, context: Any) -> Any:
        nonlocal produced
        for _ in range(request.value):
            produced += 1
            yield _Chunk(chunk)

    handler = grpc.method_handlers_generic_handler(
        "test.Flood",
        {
            "Flood": grpc.unary_stream_rpc_method_handler(
                flood,
                request_deserializer=Int32Value.FromString,
                response_serializer=_Chunk.serialize,
            )
        },
    )
    total = 2000  # 32 MiB if nothing pushed back
    async with running_servers(send_buffer_bytes=64 * 1024, compression=False) as servers:
        servers.ws_server.add_generic_rpc_handlers((handler,))
        async with connect(
            servers.ws_url, subprotocols=PROTOBUF, max_queue=4, compression=None
        ) as ws:
            mux = ClientMultiplexer(max_receive_bytes=None)
            call = mux.start("/test.Flood/Flood", None, None)
            mux.send_message(call, Int32Value(value=total).SerializeToString())
            mux.half_close(call)
            # Open the call's flow-control window wide: only the socket may push back here.
            grant = frame_pb2.CallWindowUpdate(bytes=2**31)
            mux.write_queue.push(encode_record(frame_pb2.Frame(call_id=call, window_update=grant)))
            await ws.send(mux.data_to_send() or b"")
            (driver,) = servers.ws_server.connections
            # Nobody reads: the socket fills up, then the send buffer, then yields block.
            await _wait_for(lambda: driver.max_pending_bytes >= 64 * 1024)
            stalled_at = -1
            while produced != stalled_at:  # until the producer stops making progress
                stalled_at = produced
                await asyncio.sleep(0.2)
            assert produced < total / 2
            in_flight = 64 * 1024 + len(chunk) + 64  # one batch being written
            assert driver.max_pending_bytes <= 64 * 1024 + in_flight
            received = 0
            while received < total:
                raw = await asyncio.wait_for(ws.recv(), 5)
                assert isinstance(raw, bytes)
                received += sum(
                    f.WhichOneof("kind") == "message"
                    for f in frame_pb2.FrameBatch.FromString(raw).frames
                )
            assert produced == total


@pytest.mark.timeout(30)
async def test_a_call_nobody_reads_blocks_its_own_handler_but_not_other_calls() -> None:
    produced = 0

    async def flood(request: Int32Value, context: Any) -> Any:
        nonlocal produced
        for _ in range(request.value):
            produced += 1
            yield _Chunk(b"y" * 16384)

    handler = grpc.method_handlers_generic_handler(
        "test.Flood",
        {
            "Flood": grpc.unary_stream_rpc_method_handler(
                flood,
                request_deserializer=Int32Value.FromString,
                response_serializer=_Chunk.serialize,
            )
        },
    )
    async with running_servers() as servers:
        servers.ws_server.add_generic_rpc_handlers((handler,))
        channel = servers.channel("ws")
        flood_call = channel.unary_stream(
            "/test.Flood/Flood",
            request_serializer=Int32Value.SerializeToString,
            response_deserializer=bytes,
        )(Int32Value(value=200))
        await flood_call.wait_for_connection()
        stalled_at = -1
        while produced != stalled_at:  # the handler stops once the call's window is used up
            stalled_at = produced
            await asyncio.sleep(0.2)
        assert produced < 40  # 256 KiB window / 16 KiB messages, plus what is in flight
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        for i in range(20):  # the shared connection still carries other calls
            response = await stub.GetPresence(sync_pb2.GetPresenceRequest(collection_id=str(i)))
            assert response.collection_id == str(i)
        count = 0
        async for _ in flood_call:  # reading reopens the window: everything arrives
            count += 1
        assert count == produced == 200


class _Chunk:
    """A pre-serialized response payload (any bytes are a valid payload)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @staticmethod
    def serialize(message: _Chunk) -> bytes:
        return message.data


@pytest.mark.timeout(30)
async def test_keepalive_closes_connections_whose_peer_stops_answering_pings() -> None:
    async with running_servers(ping_interval=0.2, ping_timeout=0.2, close_timeout=0.2) as servers:
        async with connect(servers.ws_url, subprotocols=PROTOBUF, ping_interval=None) as ws:
            await _wait_for(lambda: len(servers.ws_server.connections) == 1)
            ws.transport.pause_reading()  # a dead peer: pings go unanswered
            await _wait_for(lambda: not servers.ws_server.connections, timeout=5)
            ws.transport.abort()  # no closing handshake with a peer that does not read


@pytest.mark.timeout(30)
async def test_graceful_stop_lets_calls_finish_then_ends_the_rest_with_unavailable() -> None:
    async with running_servers() as servers:
        stub = sync_pb2_grpc.SyncServiceStub(servers.channel("ws"))
        servers.servicer.expected = 1
        finishing = stub.Publish(
            sync_pb2.PublishRequest(delta=types_pb2.Delta(collection_id="wait"))
        )
        hanging = stub.Publish(sync_pb2.PublishRequest(delta=types_pb2.Delta(collection_id="hang")))
        await servers.servicer.all_arrived.wait()
        stopping = asyncio.create_task(servers.ws_server.stop(grace=3))
        await _wait_for(lambda: servers.ws_server._stopping)  # stop() has begun
        servers.servicer.gate.set()  # the first call completes within the grace period
        assert (await finishing).ack.collection_id == "wait"
        assert await hanging.code() is grpc.StatusCode.UNAVAILABLE
        assert await hanging.details() == "server is shutting down"
        await stopping
        assert not await servers.ws_server.wait_for_termination(0)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_wss_with_a_server_ssl_context_and_a_client_ca_file(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    async with running_servers() as servers:
        secure = WebSocketServer()
        sync_pb2_grpc.add_SyncServiceServicer_to_server(servers.servicer, secure)
        port = secure.add_secure_port("127.0.0.1:0", context)
        assert secure.ports() == [port]
        await secure.start()
        channel = WebSocketChannel(f"wss://127.0.0.1:{port}", ca_file=str(cert))
        try:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            response = await stub.GetPresence(sync_pb2.GetPresenceRequest(collection_id="tls"))
            assert response.collection_id == "tls"
        finally:
            await channel.close()
            await secure.stop(None)
