"""A raw legacy JSON client for tests: plain WebSocket, no subprotocol, JSON text frames.

It speaks exactly what an old leptos-sync client spoke and nothing of syncwire's typed
framing. Received frames are parsed with `exact_json`, so large integers stay exact.
`probe` is the ordering barrier the tests use instead of sleeps: a `sync` the sender
sends after some input; when its rebroadcast arrives, everything the server did about
the earlier input has already been delivered.
"""

from __future__ import annotations

import asyncio
import itertools
from types import TracebackType
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode

from tests.legacy_strategies import exact_json

RECV_TIMEOUT: Final = 5.0
# A relayed 1 MiB message is a little larger than 1 MiB; leave room for it.
CLIENT_MAX_SIZE: Final = 4 * 1024 * 1024

JsonObject = dict[str, Any]


class LegacyClient:
    """One legacy connection. Open with `await LegacyClient.open(url)`."""

    _probes = itertools.count(1)

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: JsonObject = {}
        self.peer_id = ""
        # Frames read ahead by `open` (other peers' presence that arrived before this
        # client's own "connected"), handed out first by `recv`.
        self._read_ahead: list[JsonObject] = []

    @classmethod
    async def open(cls, url: str, *, compression: str | None = "deflate") -> LegacyClient:
        """Connects, reads the welcome (the first frame) and the client's own
        "connected". Presence of other peers may arrive in between (their joins reach
        this node through the broker at their own pace): it is kept for `recv`."""
        ws = await connect(url, max_size=CLIENT_MAX_SIZE, compression=compression)
        client = cls(ws)
        welcome = await client.recv()
        assert welcome["type"] == "welcome", welcome
        client.welcome = welcome
        client.peer_id = welcome["peer_id"]
        early: list[JsonObject] = []
        while True:
            message = await client.recv()
            if message["type"] == "heartbeat":
                continue
            if message["type"] == "presence" and message["peer_id"] != client.peer_id:
                early.append(message)
                continue
            assert message["type"] == "presence", message
            assert message["action"] == "connected", message
            break
        client._read_ahead = early
        return client

    async def __aenter__(self) -> LegacyClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.ws.close()

    # ------------------------------------------------------------------ sending

    async def send_text(self, payload: str | bytes) -> None:
        """One text frame (bytes are sent as they are, as UTF-8 text)."""
        await self.ws.send(payload, text=True)

    async def send_binary(self, payload: bytes) -> None:
        await self.ws.send(payload, text=False)

    def send_raw_text_frame(self, payload: bytes) -> None:
        """A text frame with any bytes, even invalid UTF-8 (which `send` refuses to make):
        written through the sans-I/O protocol under the connection."""
        self.ws.protocol.send_frame(Frame(Opcode.TEXT, payload))
        self.ws.send_data()

    async def probe(self) -> JsonObject:
        """Sends a unique `sync` and returns its data; see the module docstring."""
        data = {"probe": next(self._probes)}
        await self.send_text(f'{{"type":"sync","data":{{"probe":{data["probe"]}}}}}')
        return data

    # ---------------------------------------------------------------- receiving

    async def recv(self, timeout: float = RECV_TIMEOUT) -> JsonObject:
        """The next frame: always a text frame holding a JSON object."""
        if self._read_ahead:
            return self._read_ahead.pop(0)
        async with asyncio.timeout(timeout):
            frame = await self.ws.recv()
        assert isinstance(frame, str), f"server sent a binary frame: {frame!r}"
        value = exact_json(frame)
        assert isinstance(value, dict), frame
        return value

    async def expect_presence(self, peer_id: str, action: str) -> JsonObject:
        """The next presence event (server heartbeats in between are skipped)."""
        message = await self.recv()
        while message["type"] == "heartbeat":
            message = await self.recv()
        assert message["type"] == "presence", message
        assert (message["peer_id"], message["action"]) == (peer_id, action), message
        return message

    async def expect_probe(self, data: JsonObject, sender: str) -> None:
        """The next frame is the rebroadcast of probe `data` sent by `sender`."""
        message = await self.recv()
        assert message["type"] == "sync" and message["data"] == data, message
        assert message["peer_id"] == sender, message

    async def closed(self, timeout: float = RECV_TIMEOUT) -> Close:
        """Waits for the server to close; frames still in flight are skipped."""
        async with asyncio.timeout(timeout):
            try:
                while True:
                    await self.ws.recv()
            except ConnectionClosed as closed:
                assert closed.rcvd is not None, f"no close frame received: {closed!r}"
                return closed.rcvd


async def open_pair(url: str) -> tuple[LegacyClient, LegacyClient]:
    """An observer, then a sender in the same collection; join events consumed."""
    observer = await LegacyClient.open(url)
    sender = await LegacyClient.open(url)
    await observer.expect_presence(sender.peer_id, "connected")
    return sender, observer
