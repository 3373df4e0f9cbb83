"""JSON clients: a legacy leptos-sync client (type-tagged `sync` messages over a
WebSocket that offers no subprotocol) and a python-socketio client."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import orjson
import socketio
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.clients.base import FanoutClient, Sink, StreamEnded, Unavailable
from bench.clients.raw import ws_connect
from bench.payload import decode_json_data, json_data


class LegacyJsonFanout(FanoutClient):
    """Joins its home collection through ``?room_id=`` and publishes `sync` messages;
    the server rebroadcasts them to every peer of the collection, the sender included."""

    def __init__(self, endpoint: str, compression: bool) -> None:
        super().__init__(endpoint)
        self._compression = compression
        self._ws: ClientConnection | None = None

    async def _connect(self, collection: str) -> None:
        self._ws = ws = await ws_connect(
            f"{self.endpoint}/?room_id={quote(collection)}", self._compression
        )
        try:
            first = orjson.loads(await ws.recv(decode=False))
        except ConnectionClosed as exc:
            raise Unavailable(
                f"server closed a JSON connection without subprotocol: {exc}"
            ) from None
        if not isinstance(first, dict) or first.get("type") != "welcome":
            raise Unavailable(f"expected a legacy welcome, got {first!r:.200}")

    async def _receive(self, sink: Sink) -> None:
        assert self._ws is not None
        loads = orjson.loads
        async for message in self._ws:
            frame = loads(message)
            if frame.get("type") == "sync":
                seq, sent_ns = decode_json_data(frame["data"])
                sink(seq, sent_ns)
            elif frame.get("type") == "error":
                raise StreamEnded(f"legacy error: {frame}")

    async def publish(self, seq: int, sent_ns: int) -> None:
        assert self._ws is not None
        frame = orjson.dumps({"type": "sync", "data": json_data(seq, sent_ns)})
        await self._ws.send(frame, text=True)

    async def _disconnect(self) -> None:
        if self._ws is not None:
            await self._ws.close()


class SocketIoFanout(FanoutClient):
    """A python-socketio client over the WebSocket transport, in one room."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self._sio: Any = socketio.AsyncClient(reconnection=False, logger=False)
        self._room = ""
        self._sink: Sink | None = None
        self._gone = asyncio.Event()

    async def _connect(self, collection: str) -> None:
        self._room = collection

        def on_delta(data: Any) -> None:
            if self._sink is not None:
                seq, sent_ns = decode_json_data(data)
                self._sink(seq, sent_ns)

        self._sio.on("delta", on_delta)
        self._sio.on("disconnect", lambda *reason: self._gone.set())
        await self._sio.connect(self.endpoint, transports=["websocket"])
        await self._sio.call("join", collection, timeout=10)

    async def _receive(self, sink: Sink) -> None:
        self._sink = sink
        # Not sio.wait(): cancelling a task that awaits engineio's read loop task would
        # cancel the read loop itself.
        await self._gone.wait()

    async def publish(self, seq: int, sent_ns: int) -> None:
        await self._sio.emit("pub", (self._room, json_data(seq, sent_ns)))

    async def _disconnect(self) -> None:
        await self._sio.disconnect()
