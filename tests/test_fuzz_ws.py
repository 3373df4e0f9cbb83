"""Fuzzing the WebSocket framing over a real connection: random bytes, and valid
FrameBatches truncated or mutated. The server never crashes or logs an unexpected error,
frees every task, session and connection the input caused, and a bystander connection
keeps working throughout."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from client.ws_channel import WebSocketChannel
from server.app import SyncwireServer
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from syncwire.ws.v1 import frame_pb2
from wire.protocol import SUBPROTOCOL_PROTOBUF

from .fuzz_harness import (
    FUZZ_SETTINGS,
    Baseline,
    assert_unharmed,
    baseline_of,
    mutated,
)
from .service_harness import SyncStream, running_server

SERVICE = "/syncwire.v1.SyncService/"
METHODS = [SERVICE + name for name in ("Sync", "Publish", "GetHistory", "GetServerInfo")] + [
    "/grpc.health.v1.Health/Check",
    "/no.Such/Method",
    "",
]

_requests = st.sampled_from(
    [
        sync_pb2.SyncRequest(request_id=1, subscribe=sync_pb2.Subscribe(collection_id="fuzz")),
        sync_pb2.SyncRequest(request_id=2, blob=sync_pb2.Blob(data=b"\x00\xff")),
        sync_pb2.SyncRequest(
            request_id=3,
            publish=sync_pb2.Publish(delta=types_pb2.Delta(collection_id="fuzz", delta=b"d")),
        ),
        sync_pb2.PublishRequest(delta=types_pb2.Delta(collection_id="fuzz", delta=b"u")),
        sync_pb2.GetServerInfoRequest(),
    ]
).map(lambda message: message.SerializeToString())


@st.composite
def frame_batches(draw: st.DrawFn) -> bytes:
    """A well-formed FrameBatch: calls started, fed, half-closed, cancelled, acked."""
    frames = []
    for _ in range(draw(st.integers(1, 6))):
        call_id = draw(st.sampled_from([0, 1, 2, 3, 5, 2**31 - 1]))
        kind = draw(
            st.sampled_from(["start", "message", "half_close", "cancel", "window_update", "end"])
        )
        frame = frame_pb2.Frame(call_id=call_id)
        if kind == "start":
            frame.start.method = draw(st.sampled_from(METHODS))
            if draw(st.booleans()):
                frame.start.timeout.CopyFrom(Duration(seconds=draw(st.integers(-1, 2))))
            if draw(st.booleans()):
                frame.start.metadata.add(
                    key=draw(st.sampled_from(["x-a", "Bad Key", "b-bin"])), value=b"v"
                )
        elif kind == "message":
            frame.message.payload = draw(_requests | st.binary(max_size=64))
        elif kind == "half_close":
            frame.half_close.SetInParent()
        elif kind == "cancel":
            frame.cancel.SetInParent()
        elif kind == "window_update":
            frame.window_update.bytes = draw(st.integers(0, 2**32 - 1))
        else:
            frame.end.code = draw(st.integers(0, 20))
        frames.append(frame)
    return frame_pb2.FrameBatch(frames=frames).SerializeToString()


_valid_examples = [
    frame_pb2.FrameBatch(
        frames=[
            frame_pb2.Frame(call_id=1, start=frame_pb2.CallStart(method=SERVICE + "Sync")),
            frame_pb2.Frame(
                call_id=1,
                message=frame_pb2.CallMessage(
                    payload=sync_pb2.SyncRequest(
                        request_id=1, subscribe=sync_pb2.Subscribe(collection_id="fuzz")
                    ).SerializeToString()
                ),
            ),
            frame_pb2.Frame(call_id=3, start=frame_pb2.CallStart(method=SERVICE + "GetServerInfo")),
            frame_pb2.Frame(call_id=3, message=frame_pb2.CallMessage(payload=b"")),
            frame_pb2.Frame(call_id=3, half_close=frame_pb2.CallHalfClose()),
        ]
    ).SerializeToString()
]

ws_messages = st.lists(
    st.one_of(
        st.binary(max_size=256),
        st.sampled_from(_valid_examples),
        frame_batches(),
        mutated(_valid_examples, st.binary(min_size=1, max_size=8)),
        frame_batches().flatmap(lambda batch: mutated([batch], st.binary(max_size=8))),
        st.text(max_size=64),  # text messages are not part of the framing
    ),
    min_size=1,
    max_size=4,
)


class Bystander:
    """A typed client on its own connection, subscribed while the fuzzing goes on."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
        self.sent = 0

    async def start(self) -> None:
        await self.stream.welcome()
        await self.stream.subscribe("bystander")

    async def still_served(self) -> None:
        self.sent += 1
        ack = await self.stream.publish("bystander", str(self.sent).encode())
        delta = await self.stream.expect("delta", lambda r: r.delta.offset == ack.offset)
        assert delta.delta.delta == str(self.sent).encode()


@pytest.fixture
async def fuzzed() -> AsyncIterator[tuple[SyncwireServer, Bystander, Baseline]]:
    async with running_server(max_message_bytes=4096) as server:
        async with WebSocketChannel(server.ws_url) as channel:
            bystander = Bystander(channel)
            await bystander.start()
            yield server, bystander, baseline_of(server)
            await bystander.stream.close()


@pytest.mark.timeout(60)
@settings(FUZZ_SETTINGS, max_examples=100)
@given(messages=ws_messages)
async def test_framing_input_never_hurts_the_server(
    fuzzed: tuple[SyncwireServer, Bystander, Baseline],
    caplog: pytest.LogCaptureFixture,
    messages: list[bytes | str],
) -> None:
    server, bystander, baseline = fuzzed
    async with connect(server.ws_url, subprotocols=[SUBPROTOCOL_PROTOBUF]) as ws:  # type: ignore[list-item]
        try:
            for message in messages:
                await ws.send(message)
        except ConnectionClosed:
            pass  # the server may close on input the framing cannot accept
    await assert_unharmed(server, baseline, bystander.still_served, caplog.records)
