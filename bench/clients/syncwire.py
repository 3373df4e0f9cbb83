"""syncwire's own typed clients: the generated stub over native gRPC and over the
WebSocket framing (``client.ws_channel.WebSocketChannel``), driven identically."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from bench.clients.base import Caller, FanoutClient, IdleClient, RpcTarget, Sink, StreamEnded
from bench.payload import decode_binary, encode_binary
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from wire.sentinels import EOF

ChannelFactory = Callable[[str], grpc.aio.Channel]

# A TCP connection per channel: grpc shares connections of identical channels otherwise.
GRPC_CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


def grpc_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=GRPC_CHANNEL_OPTIONS)


def ws_channel_factory(compression: bool) -> ChannelFactory:
    def factory(url: str) -> grpc.aio.Channel:
        from client.ws_channel import WebSocketChannel

        return WebSocketChannel(url, compression=compression)

    return factory


class _SyncStream:
    """A Sync stream subscribed to one collection."""

    def __init__(self, factory: ChannelFactory, endpoint: str) -> None:
        self.channel = factory(endpoint)
        self.call: Any = None

    async def subscribe(self, collection: str) -> None:
        stub = sync_pb2_grpc.SyncServiceStub(self.channel)
        self.call = stub.Sync()  # type: ignore[call-arg]  # write()/read() style
        first = await self.read()
        if not first.HasField("welcome"):
            raise StreamEnded(f"expected a welcome, got {first.WhichOneof('kind')}")
        await self.call.write(
            sync_pb2.SyncRequest(
                request_id=1, subscribe=sync_pb2.Subscribe(collection_id=collection)
            )
        )
        while True:
            response = await self.read()
            kind = response.WhichOneof("kind")
            if kind == "subscribed":
                return
            if kind in ("error", "disconnect"):
                raise StreamEnded(f"subscribe failed: {response}")

    async def read(self) -> sync_pb2.SyncResponse:
        response = await self.call.read()
        if response is EOF:
            raise StreamEnded(f"stream ended: {await self.call.code()}")
        assert isinstance(response, sync_pb2.SyncResponse)
        return response

    async def close(self) -> None:
        if self.call is not None:
            self.call.cancel()
        await self.channel.close(None)


class SyncwireFanout(FanoutClient):
    def __init__(self, endpoint: str, factory: ChannelFactory) -> None:
        super().__init__(endpoint)
        self._stream = _SyncStream(factory, endpoint)
        self._collection = ""

    async def _connect(self, collection: str) -> None:
        self._collection = collection
        await self._stream.subscribe(collection)

    async def _receive(self, sink: Sink) -> None:
        read = self._stream.call.read
        eof = EOF
        while True:
            response = await read()
            if response is eof:
                return
            if response.WhichOneof("kind") == "delta":
                seq, sent_ns = decode_binary(response.delta.delta)
                sink(seq, sent_ns)
            elif response.HasField("disconnect"):
                raise StreamEnded(f"server disconnect: {response.disconnect.reason}")

    async def publish(self, seq: int, sent_ns: int) -> None:
        await self._stream.call.write(
            sync_pb2.SyncRequest(
                publish=sync_pb2.Publish(
                    delta=types_pb2.Delta(
                        collection_id=self._collection, delta=encode_binary(seq, sent_ns)
                    )
                )
            )
        )

    async def _disconnect(self) -> None:
        await self._stream.close()


class SyncwireRpc(RpcTarget):
    """Unary Publish calls over one shared channel."""

    def __init__(self, endpoint: str, factory: ChannelFactory) -> None:
        super().__init__(endpoint)
        self._factory = factory
        self._channel: grpc.aio.Channel | None = None

    async def open(self, collection: str, concurrency: int) -> list[Caller]:
        self._channel = channel = self._factory(self.endpoint)
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        seq = 0

        async def call() -> None:
            nonlocal seq
            seq += 1
            delta = types_pb2.Delta(collection_id=collection, delta=encode_binary(seq, 0))
            await stub.Publish(sync_pb2.PublishRequest(delta=delta))

        return [call] * concurrency

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)


class SyncwireIdle(IdleClient):
    def __init__(self, endpoint: str, factory: ChannelFactory) -> None:
        super().__init__(endpoint)
        self._stream = _SyncStream(factory, endpoint)

    async def _connect(self, collection: str) -> None:
        await self._stream.subscribe(collection)

    async def _drain(self) -> None:
        while True:
            await self._stream.read()

    async def heartbeat(self) -> None:
        await self._stream.call.write(
            sync_pb2.SyncRequest(heartbeat=types_pb2.Heartbeat(replica_id="bench"))
        )

    async def _disconnect(self) -> None:
        await self._stream.close()
