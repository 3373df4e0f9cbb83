"""What one connection can cost the server is bounded (docs/protocol.md, "Limits"):
frames that belong to no call are answered by at most one ProtocolError per WebSocket
message, a connection past the invalid-frame budget is closed with 1008, discards are
logged at most once per connection per interval, and a connection's concurrent calls are
capped with RESOURCE_EXHAUSTED. Exact figures, sans-I/O (injected clock) and over real
loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from client.ws_channel import WebSocketChannel
from server.ws.server import WebSocketServer
from syncwire.ws.v1 import frame_pb2
from wire.codec import decode_batch, encode_message_record, encode_record
from wire.events import FrameDiscarded
from wire.mux import (
    DISCARD_LIMIT,
    DISCARD_WINDOW_SECONDS,
    ClientMultiplexer,
    ServerMultiplexer,
)

PROTOBUF = [Subprotocol("syncwire-protobuf")]
VIOLATION = "too many invalid frames: more than 100 in 10 s"
SERVICE = "test.Bounds"
RAW: dict[str, Any] = {"request_serializer": None, "response_deserializer": None}


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _unknown_calls(count: int, first_id: int = 1001) -> bytes:
    """One WebSocket message of ``count`` message frames for calls never started."""
    return b"".join(encode_message_record(first_id + 2 * i, b"") for i in range(count))


def _frames(batch: bytes | None) -> list[frame_pb2.Frame]:
    return [f for f in decode_batch(batch or b"") if isinstance(f, frame_pb2.Frame)]


def _drain(mux: ServerMultiplexer) -> list[frame_pb2.Frame]:
    frames: list[frame_pb2.Frame] = []
    while (batch := mux.data_to_send()) is not None:
        frames += _frames(batch)
    return frames


def test_one_protocol_error_per_message_carries_the_count() -> None:
    mux = ServerMultiplexer(clock=_Clock())
    events = mux.receive(_unknown_calls(40))
    assert events == [FrameDiscarded("message frame for call 1001, which was never started", 40)]
    (reply,) = _drain(mux)
    assert reply.call_id == 0 and reply.protocol_error.discarded_frames == 40
    assert reply.protocol_error.code == 3
    assert reply.protocol_error.details == "message frame for call 1001, which was never started"
    assert mux.violation is None


def test_budget_is_more_than_100_within_10_seconds() -> None:
    clock = _Clock()
    mux = ServerMultiplexer(clock=clock)
    assert (DISCARD_LIMIT, DISCARD_WINDOW_SECONDS) == (100, 10.0)
    mux.receive(_unknown_calls(60))
    clock.now += 9.9
    mux.receive(_unknown_calls(40))  # 100 within 10 s: still tolerated
    assert mux.violation is None
    clock.now += 0.2  # the first 60 are now older than 10 s
    mux.receive(_unknown_calls(60))
    assert mux.violation is None
    assert [f.protocol_error.discarded_frames for f in _drain(mux)] == [60, 40, 60]
    mux.receive(_unknown_calls(1))  # 40 + 60 + 1 within 10 s
    assert mux.violation == VIOLATION
    assert mux.receive(_unknown_calls(5)) == []  # nothing more is read
    assert [f.protocol_error.discarded_frames for f in _drain(mux)] == [1]


def test_a_flood_in_one_message_stops_at_the_limit() -> None:
    mux = ServerMultiplexer(clock=_Clock())
    events = mux.receive(_unknown_calls(100_000))
    assert events == [
        FrameDiscarded("message frame for call 1001, which was never started", DISCARD_LIMIT + 1)
    ]
    (reply,) = _drain(mux)
    assert reply.protocol_error.discarded_frames == DISCARD_LIMIT + 1
    assert mux.violation == VIOLATION


def test_the_client_end_applies_the_same_budget_to_its_server() -> None:
    mux = ClientMultiplexer(clock=_Clock())
    frames = b"".join(
        encode_record(frame_pb2.Frame(call_id=1001 + 2 * i, end=frame_pb2.CallEnd()))
        for i in range(500)
    )
    (event,) = mux.receive(frames)
    assert event == FrameDiscarded("end frame for call 1001, which was never started", 101)
    (reply,) = _frames(mux.data_to_send())
    assert reply.protocol_error.discarded_frames == DISCARD_LIMIT + 1
    assert mux.violation == VIOLATION


def test_refused_starts_count_against_the_budget() -> None:
    mux = ServerMultiplexer(clock=_Clock())
    start = frame_pb2.CallStart(method="/s/M")
    even_ids = b"".join(
        encode_record(frame_pb2.Frame(call_id=2 * i + 2, start=start)) for i in range(1000)
    )
    (event,) = mux.receive(even_ids)
    assert event == FrameDiscarded("call id 2 is even; client call ids are odd", 101)
    replies = _drain(mux)
    assert [f.WhichOneof("kind") for f in replies] == ["end"] * 101  # each start is answered
    assert mux.violation == VIOLATION


# Over real sockets.


async def _block(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    started: asyncio.Queue[None] = _STATE["started"]
    release: asyncio.Event = _STATE["release"]
    started.put_nowait(None)
    await release.wait()
    return request


async def _echo(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return request


_STATE: dict[str, Any] = {}


@contextlib.asynccontextmanager
async def _serving(**options: Any) -> AsyncIterator[tuple[WebSocketServer, str]]:
    """A WebSocketServer with the test service on an ephemeral port, and its URL."""
    server = WebSocketServer(**options)
    handlers = {
        "Block": grpc.unary_unary_rpc_method_handler(_block),
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield server, f"ws://127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def _protocol_errors(ws: ClientConnection) -> AsyncIterator[frame_pb2.ProtocolError]:
    """ProtocolError frames the server sends, until it closes the connection."""
    try:
        while True:
            message = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(message, bytes)
            for frame in _frames(message):
                if frame.WhichOneof("kind") == "protocol_error":
                    yield frame.protocol_error
    except ConnectionClosed:
        return


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "wire.connection" and r.levelno >= logging.WARNING
    ]


async def test_flooding_message_gets_one_protocol_error_then_1008(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="wire.connection")
    async with _serving() as (_, url), connect(url, subprotocols=PROTOBUF) as ws:
        await ws.send(_unknown_calls(100_000))  # about 600 KB of frames for no call
        errors = [error async for error in _protocol_errors(ws)]
        assert ws.close_code == 1008 and ws.close_reason == VIOLATION
    assert [e.discarded_frames for e in errors] == [DISCARD_LIMIT + 1]
    (line,) = _warnings(caplog)  # one line, the one that closes
    assert "closing the connection (1008)" in line and VIOLATION in line


async def test_invalid_frames_under_the_budget_cost_one_reply_each_and_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="wire.connection")
    async with _serving() as (_, url):
        async with connect(url, subprotocols=PROTOBUF) as ws:
            counts = []
            for _ in range(3):
                await ws.send(_unknown_calls(30))
                async for error in _protocol_errors(ws):
                    counts.append(error.discarded_frames)
                    break
            assert counts == [30, 30, 30]
        async with WebSocketChannel(url) as channel:  # the server carries on
            assert await channel.unary_unary(f"/{SERVICE}/Echo", **RAW)(b"hi") == b"hi"
    (line,) = _warnings(caplog)
    assert "discarded 30 frame(s)" in line


async def test_call_over_the_concurrent_call_cap_gets_resource_exhausted() -> None:
    _STATE.update(started=asyncio.Queue(), release=asyncio.Event())
    async with _serving(max_concurrent_calls=3) as (server, url):
        async with WebSocketChannel(url) as channel:
            block = channel.unary_unary(f"/{SERVICE}/Block", **RAW)
            echo = channel.unary_unary(f"/{SERVICE}/Echo", **RAW)
            running = [block(str(i).encode()) for i in range(3)]
            async with asyncio.timeout(10):
                for _ in range(3):
                    await _STATE["started"].get()
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await echo(b"fourth")
                assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert refused.value.details() == "Concurrent RPC limit exceeded!"
                _STATE["release"].set()
                assert [await call for call in running] == [b"0", b"1", b"2"]
                assert await echo(b"again") == b"again"  # room again once calls ended
            (connection,) = server.connections
            assert connection.call_count == 0
