"""Test servicers and servers for the WebSocket framing tests.

One servicer instance is served by a real grpc.aio server AND a WebSocketServer, so the
tests can run the same stub code over grpc.aio, WebSocketChannel and InProcessChannel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from google.protobuf.wrappers_pb2 import Int32Value, StringValue

from client.inprocess import InProcessChannel
from client.ws_channel import WebSocketChannel
from server.ws import WebSocketServer
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

TRANSPORTS = ["grpc", "ws", "inprocess"]
KINDS = "/test.Kinds/"


class TestSyncServicer(sync_pb2_grpc.SyncServiceServicer):
    """Behaviour chosen by the request: ``delta.collection_id`` for Publish."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.gate = asyncio.Event()  # "wait" calls block until it is set
        self.arrived = 0
        self.all_arrived = asyncio.Event()
        self.expected = 0
        self.time_remaining: float | None = None

    async def Publish(
        self, request: sync_pb2.PublishRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sync_pb2.PublishResponse:
        action = request.delta.collection_id
        await self.started.put(action)
        self.time_remaining = context.time_remaining()
        if action == "abort":
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "not yours",
                (("reason", "test"), ("blob-bin", b"\x00\x01")),
            )
        if action == "raise":
            raise ValueError("boom")
        if action == "set-code":
            context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
            context.set_details("precondition")
        if action == "hang":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if action == "wait":
            self.arrived += 1
            if self.arrived >= self.expected:
                self.all_arrived.set()
            await self.gate.wait()
        if action == "metadata":
            await context.send_initial_metadata((("initial", "yes"),))
            context.set_trailing_metadata((("trailer", "yes"),))
        metadata = [
            f"{key}={value!r}"
            for key, value in context.invocation_metadata() or ()
            if key.startswith("x-")
        ]
        return sync_pb2.PublishResponse(
            ack=sync_pb2.PublishAck(
                collection_id=action,
                offset=len(request.delta.delta),
                epoch=",".join(metadata),
                client_message_id=context.peer() if action == "peer" else "",
            )
        )

    async def Sync(
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[sync_pb2.SyncResponse]:
        try:
            async for request in request_iterator:
                if request.WhichOneof("kind") == "blob" and request.blob.data == b"stop":
                    return
                yield sync_pb2.SyncResponse(
                    request_id=request.request_id,
                    binary_ack=types_pb2.BinaryAck(peer_id=request.blob.data.decode()),
                )
        except (asyncio.CancelledError, GeneratorExit):
            # grpc.aio closes a generator suspended at `yield`; one waiting for a request
            # is cancelled. Either way the handler stops.
            self.cancelled.set()
            raise

    async def GetPresence(
        self, request: sync_pb2.GetPresenceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sync_pb2.GetPresenceResponse:
        return sync_pb2.GetPresenceResponse(collection_id=request.collection_id)

    def GetHistory(
        self, request: sync_pb2.GetHistoryRequest, context: Any
    ) -> sync_pb2.GetHistoryResponse:
        """What the generated (synchronous) default does; both transports must agree."""
        context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        context.set_details("Method not implemented!")
        raise NotImplementedError("Method not implemented!")

    def GetServerInfo(
        self, request: sync_pb2.GetServerInfoRequest, context: Any
    ) -> sync_pb2.GetServerInfoResponse:
        """A synchronous handler (runs in a worker thread)."""
        return sync_pb2.GetServerInfoResponse(server_info=types_pb2.ServerInfo(version="test"))


# A second, generic service covering every call kind and handler style.


async def count(request: Int32Value, context: Any) -> AsyncIterator[Int32Value]:
    for i in range(request.value):
        yield Int32Value(value=i)


async def count_writer(request: Int32Value, context: Any) -> None:
    for i in range(request.value):
        await context.write(Int32Value(value=i))


def count_sync(request: Int32Value, context: Any) -> Iterator[Int32Value]:
    for i in range(request.value):
        yield Int32Value(value=i)


async def total(requests: AsyncIterator[Int32Value], context: Any) -> Int32Value:
    return Int32Value(value=sum([r.value async for r in requests]))


async def total_reader(requests: Any, context: Any) -> Int32Value:
    result = 0
    while (request := await context.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
        result += request.value
    return Int32Value(value=result)


async def echo_writer(requests: Any, context: Any) -> None:
    while (request := await context.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
        await context.write(StringValue(value=request.value.upper()))


def upper_sync(request: StringValue, context: Any) -> StringValue:
    return StringValue(value=request.value.upper())


def kinds_handler() -> grpc.GenericRpcHandler[Any, Any]:
    """The ``test.Kinds`` service."""
    i32: dict[str, Any] = {
        "request_deserializer": Int32Value.FromString,
        "response_serializer": Int32Value.SerializeToString,
    }
    text: dict[str, Any] = {
        "request_deserializer": StringValue.FromString,
        "response_serializer": StringValue.SerializeToString,
    }
    return grpc.method_handlers_generic_handler(
        "test.Kinds",
        {
            "Count": grpc.unary_stream_rpc_method_handler(count, **i32),
            "CountWriter": grpc.unary_stream_rpc_method_handler(count_writer, **i32),
            "CountSync": grpc.unary_stream_rpc_method_handler(count_sync, **i32),
            "Total": grpc.stream_unary_rpc_method_handler(total, **i32),
            "TotalReader": grpc.stream_unary_rpc_method_handler(total_reader, **i32),
            "EchoWriter": grpc.stream_stream_rpc_method_handler(echo_writer, **text),
            "UpperSync": grpc.unary_unary_rpc_method_handler(upper_sync, **text),
        },
    )


@dataclass
class Servers:
    """A grpc.aio server and a WebSocketServer sharing one servicer instance."""

    servicer: TestSyncServicer
    grpc_server: grpc.aio.Server
    grpc_target: str
    ws_server: WebSocketServer
    ws_url: str
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def channel(self, transport: str, **options: Any) -> grpc.aio.Channel:
        """A new channel over ``transport``; closed when the servers stop."""
        channel: grpc.aio.Channel
        if transport == "grpc":
            channel = grpc.aio.insecure_channel(self.grpc_target)
        elif transport == "ws":
            channel = WebSocketChannel(self.ws_url, **options)
        elif transport == "inprocess":
            channel = InProcessChannel(self.ws_server, **options)
        else:
            raise ValueError(transport)
        self.channels.append(channel)
        return channel


@contextlib.asynccontextmanager
async def running_servers(**ws_options: Any) -> AsyncIterator[Servers]:
    """Both servers on ephemeral loopback ports, serving the same servicer."""
    servicer = TestSyncServicer()
    grpc_server = grpc.aio.server()
    ws_server = WebSocketServer(**ws_options)
    for server in (grpc_server, ws_server):
        sync_pb2_grpc.add_SyncServiceServicer_to_server(servicer, server)
        server.add_generic_rpc_handlers((kinds_handler(),))
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    ws_port = ws_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    await ws_server.start()
    servers = Servers(
        servicer, grpc_server, f"127.0.0.1:{grpc_port}", ws_server, f"ws://127.0.0.1:{ws_port}"
    )
    try:
        yield servers
    finally:
        servicer.gate.set()
        for channel in servers.channels:
            await channel.close(None)
        await ws_server.stop(None)
        await grpc_server.stop(None)
