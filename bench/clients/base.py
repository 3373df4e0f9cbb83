"""What every transport's bench client can do, so one harness drives them all.

A fan-out client subscribes one connection to a collection and can publish into it;
each payload it receives goes to a `Sink` as (seq, sent_ns). An RPC target hands out
callers that each make one request/response round trip. An idle client holds one
connection open.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Protocol


class Sink(Protocol):
    def __call__(self, seq: int, sent_ns: int) -> None: ...


Caller = Callable[[], Awaitable[None]]


class Unavailable(Exception):
    """The server does not offer what this client needs (e.g. no legacy JSON mode yet)."""


class StreamEnded(Exception):
    """The server ended a connection the bench expected to stay open."""


class FanoutClient(ABC):
    """One subscriber connection. `open` returns once subscribed; received payloads go
    to the sink from a reader task; `failure` says why the reader stopped, if it did."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.failure: BaseException | None = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self, collection: str, sink: Sink) -> None:
        await self._connect(collection)
        self._reader = asyncio.create_task(self._read_loop(sink))

    async def _read_loop(self, sink: Sink) -> None:
        try:
            await self._receive(sink)
            raise StreamEnded("connection ended")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.failure = exc

    @property
    def running(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(Exception):
            await self._disconnect()

    @abstractmethod
    async def _connect(self, collection: str) -> None:
        """Connects and subscribes; returns once live messages will arrive."""

    @abstractmethod
    async def _receive(self, sink: Sink) -> None:
        """Reads until the connection ends, passing each payload to `sink`."""

    @abstractmethod
    async def publish(self, seq: int, sent_ns: int) -> None:
        """Publishes one payload into the subscribed collection."""

    @abstractmethod
    async def _disconnect(self) -> None: ...


class RpcTarget(ABC):
    """Opens the connections for `concurrency` concurrent callers."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    @abstractmethod
    async def open(self, collection: str, concurrency: int) -> list[Caller]: ...

    @abstractmethod
    async def close(self) -> None: ...


class IdleClient(ABC):
    """One idle connection (for syncwire: a subscribed sync stream)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._reader: asyncio.Task[None] | None = None

    async def open(self, collection: str) -> None:
        await self._connect(collection)
        self._reader = asyncio.create_task(self._drain())

    @property
    def alive(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def heartbeat(self) -> None:
        """Application-level liveness, where the protocol has one."""
        return None

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        with contextlib.suppress(Exception):
            await self._disconnect()

    @abstractmethod
    async def _connect(self, collection: str) -> None: ...

    @abstractmethod
    async def _drain(self) -> None:
        """Reads and discards until the connection ends."""

    @abstractmethod
    async def _disconnect(self) -> None: ...
