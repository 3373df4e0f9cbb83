"""Baseline clients: plain `websockets` and plain grpc.aio moving 256 raw bytes."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
from websockets.asyncio.client import ClientConnection, connect

from bench.clients.base import Caller, FanoutClient, IdleClient, RpcTarget, Sink, StreamEnded
from bench.clients.syncwire import grpc_channel
from bench.payload import decode_binary, encode_binary
from bench.servers.raw_grpc import ECHO_METHOD, FANOUT_METHOD
from wire.sentinels import EOF


async def ws_connect(url: str, compression: bool) -> ClientConnection:
    return await connect(url, compression="deflate" if compression else None, max_size=2**20)


class RawWebSocketFanout(FanoutClient):
    def __init__(self, endpoint: str, compression: bool) -> None:
        super().__init__(endpoint)
        self._compression = compression
        self._ws: ClientConnection | None = None

    async def _connect(self, collection: str) -> None:
        self._ws = await ws_connect(f"{self.endpoint}/broadcast/{collection}", self._compression)

    async def _receive(self, sink: Sink) -> None:
        assert self._ws is not None
        async for message in self._ws:
            assert isinstance(message, bytes)
            seq, sent_ns = decode_binary(message)
            sink(seq, sent_ns)

    async def publish(self, seq: int, sent_ns: int) -> None:
        assert self._ws is not None
        await self._ws.send(encode_binary(seq, sent_ns))

    async def _disconnect(self) -> None:
        if self._ws is not None:
            await self._ws.close()


class RawWebSocketEcho(RpcTarget):
    """Request/response echo: one connection per caller (a WebSocket has no call ids)."""

    def __init__(self, endpoint: str, compression: bool) -> None:
        super().__init__(endpoint)
        self._compression = compression
        self._connections: list[ClientConnection] = []

    async def open(self, collection: str, concurrency: int) -> list[Caller]:
        self._connections = list(
            await asyncio.gather(
                *(
                    ws_connect(f"{self.endpoint}/echo", self._compression)
                    for _ in range(concurrency)
                )
            )
        )
        payload = encode_binary(1, 0)

        def caller(ws: ClientConnection) -> Caller:
            async def call() -> None:
                await ws.send(payload)
                await ws.recv()

            return call

        return [caller(ws) for ws in self._connections]

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self._connections), return_exceptions=True)


# Sized like a syncwire subscribe request and heartbeat.
_IDLE_HELLO = b'{"subscribe":{"collection_id":"idle-collection","join_presence":false}}'
_IDLE_HEARTBEAT = b'{"heartbeat":{"replica_id":"bench"}}'


class RawWebSocketIdle(IdleClient):
    def __init__(self, endpoint: str, compression: bool) -> None:
        super().__init__(endpoint)
        self._compression = compression
        self._ws: ClientConnection | None = None

    async def _connect(self, collection: str) -> None:
        # As a syncwire idle client does (settings, welcome, subscribe, subscribed), the
        # connection carries a message each way before it idles, so that its
        # permessage-deflate state is touched on both ends as syncwire's is.
        self._ws = ws = await ws_connect(f"{self.endpoint}/echo", self._compression)
        await ws.send(_IDLE_HELLO)
        await ws.recv()

    async def heartbeat(self) -> None:
        assert self._ws is not None
        await self._ws.send(_IDLE_HEARTBEAT)  # echoed; the drain loop reads it

    async def _drain(self) -> None:
        assert self._ws is not None
        async for _ in self._ws:
            pass
        raise StreamEnded("connection closed")

    async def _disconnect(self) -> None:
        if self._ws is not None:
            await self._ws.close()


class RawGrpcFanout(FanoutClient):
    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self._channel = grpc_channel(endpoint)
        self._call: Any = None

    async def _connect(self, collection: str) -> None:
        fanout = self._channel.stream_stream(FANOUT_METHOD, None, None)
        self._call = fanout()  # type: ignore[call-arg]  # write()/read() style
        ready = await self._call.read()
        if ready is EOF:
            raise StreamEnded(f"fanout stream ended: {await self._call.code()}")

    async def _receive(self, sink: Sink) -> None:
        read = self._call.read
        eof = EOF
        while True:
            message = await read()
            if message is eof:
                return
            seq, sent_ns = decode_binary(message)
            sink(seq, sent_ns)

    async def publish(self, seq: int, sent_ns: int) -> None:
        await self._call.write(encode_binary(seq, sent_ns))

    async def _disconnect(self) -> None:
        if self._call is not None:
            self._call.cancel()
        await self._channel.close(None)


class RawGrpcEcho(RpcTarget):
    """Unary echo calls over one shared channel."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self._channel: grpc.aio.Channel | None = None

    async def open(self, collection: str, concurrency: int) -> list[Caller]:
        self._channel = grpc_channel(self.endpoint)
        echo = self._channel.unary_unary(ECHO_METHOD, None, None)
        payload = encode_binary(1, 0)

        async def call() -> None:
            await echo(payload)

        return [call] * concurrency

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
