"""The three people editing the list, each with its own connection and replica.

`TypedParticipant` uses the typed `SyncClient` (over gRPC or WebSocket) and publishes
JSON-encoded deltas; `LegacyParticipant` speaks the legacy JSON protocol over a plain
WebSocket, as an old client would. The server translates between them: a legacy
``sync`` reaches typed clients as a JSON delta, and a JSON delta reaches legacy clients
as a ``sync`` whose ``data`` is that JSON. Each replica applies what the collection
delivers (its own edits come back too, and re-applying is harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect

from client import DeltaEvent, ErrorEvent, SyncClient
from syncwire.v1 import types_pb2

from .model import Mark, Message, Op, TodoList, decode, encode


class Participant(ABC):
    """A named replica of the list, connected to the shared collection."""

    def __init__(self, name: str, via: str, collection_id: str) -> None:
        self.name = name
        self.via = via
        self.collection_id = collection_id
        self.todo = TodoList(name)
        self._marks: defaultdict[int, set[str]] = defaultdict(set)
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.via})"

    async def __aenter__(self) -> Participant:
        await self.open()
        self._reader = asyncio.create_task(self._read_or_fail(), name=f"{self.name}-reader")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.close()

    @abstractmethod
    async def open(self) -> None:
        """Connects and joins the collection; edits of others arrive from then on."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def read(self) -> None:
        """Hands every incoming message to `receive`, until cancelled."""

    @abstractmethod
    async def send(self, message: Message) -> None:
        """Broadcasts one message to the collection (the sender receives it too)."""

    async def _read_or_fail(self) -> None:
        """Runs `read`; a failure is kept and wakes the waiters, who raise it."""
        try:
            await self.read()
            raise ConnectionError(f"{self.label}: the connection ended")
        except Exception as exc:
            async with self._changed:
                self._failure = exc
                self._changed.notify_all()

    async def receive(self, value: Any) -> None:
        """Applies one incoming message and wakes whoever waits for progress."""
        message = decode(value)
        async with self._changed:
            if isinstance(message, Mark):
                self._marks[message.phase].add(message.by)
            else:
                self.todo.apply(message)
            self._changed.notify_all()

    async def send_all(self, ops: Sequence[Op]) -> None:
        for op in ops:
            await self.send(op)

    async def finish_phase(self, phase: int, everyone: Sequence[str]) -> None:
        """Marks this phase as sent, then waits until everyone's mark arrived: since
        each sender's messages arrive in order, all edits of the phase are in."""
        await self.send(Mark(self.name, phase))
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._failure is not None or self._marks[phase] >= set(everyone)
            )
        if self._failure is not None:
            raise self._failure


class TypedParticipant(Participant):
    """The typed client: `SyncClient` with JSON-encoded deltas."""

    def __init__(self, name: str, endpoint: str, collection_id: str) -> None:
        via = "typed, gRPC" if endpoint.startswith("grpc") else "typed, WebSocket"
        super().__init__(name, via, collection_id)
        self.client = SyncClient(endpoint)

    async def open(self) -> None:
        await self.client.connect()
        await self.client.subscribe(self.collection_id, join_presence=True)

    async def close(self) -> None:
        await self.client.close()

    async def read(self) -> None:
        async for event in self.client.events():
            if isinstance(event, DeltaEvent):
                await self.receive(json.loads(event.data))
            elif isinstance(event, ErrorEvent):
                raise event.error

    async def send(self, message: Message) -> None:
        await self.client.publish(
            self.collection_id, encode(message), encoding=types_pb2.PAYLOAD_ENCODING_JSON
        )


class LegacyParticipant(Participant):
    """A legacy leptos-sync JSON client: no subprotocol, ``{"type": ...}`` text frames,
    in the room given by ``room_id``."""

    def __init__(self, name: str, ws_url: str, collection_id: str) -> None:
        super().__init__(name, "legacy JSON", collection_id)
        self.url = f"{ws_url.rstrip('/')}/?{urlencode({'room_id': collection_id})}"
        self._ws: ClientConnection | None = None

    async def open(self) -> None:
        self._ws = await connect(self.url)
        welcome = json.loads(await self._ws.recv())
        if welcome.get("type") != "welcome":
            raise ConnectionError(f"expected a welcome, got {welcome!r}")

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    @property
    def ws(self) -> ClientConnection:
        if self._ws is None:
            raise RuntimeError(f"{self.name} is not connected")
        return self._ws

    async def read(self) -> None:
        async for frame in self.ws:
            message = json.loads(frame)
            if message.get("type") == "sync":
                await self.receive(message["data"])
            elif message.get("type") == "error":
                raise RuntimeError(f"the server refused {self.name}'s message: {message}")
            # welcome, presence and heartbeat frames need no action here

    async def send(self, message: Message) -> None:
        await self.ws.send(json.dumps({"type": "sync", "data": message.to_json()}))
