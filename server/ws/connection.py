"""Drives one connection's ServerMultiplexer: reads messages, runs calls, writes batches.

A single writer task sends everything, so frames queued while the socket is busy go out
coalesced into one WebSocket message. Writers of response messages wait while more than
``send_buffer_bytes`` are queued: a slow reader slows the servicer down instead of
growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from websockets.exceptions import ConnectionClosed

from server.ws.call import ServerCall
from server.ws.context import ConnectionInfo
from server.ws.registry import Handler, MethodRegistry
from server.ws.serialize_cache import SerializationCache
from wire.events import (
    CallCancelled,
    CallFailed,
    CallStarted,
    Event,
    FrameDiscarded,
    HalfClosed,
    MessageReceived,
    PeerProtocolError,
    WindowOpened,
)
from wire.metadata import MetadataPairs
from wire.mux import CallStateError, ServerMultiplexer
from wire.transport import MessageTransport

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Per-connection bounds."""

    max_message_bytes: int
    send_buffer_bytes: int


class ServerConnectionDriver:
    """One client connection speaking the typed framing."""

    def __init__(
        self,
        transport: MessageTransport,
        info: ConnectionInfo,
        *,
        limits: ServerLimits,
        registry: MethodRegistry,
        cache: SerializationCache,
        peer_max_message_bytes: int | None,
        accepting: Callable[[], bool],
    ) -> None:
        self._transport = transport
        self.info = info
        self.limits = limits
        self._registry = registry
        self._cache = cache
        self._accepting = accepting
        self.mux = ServerMultiplexer(
            max_receive_bytes=limits.max_message_bytes, max_send_bytes=peer_max_message_bytes
        )
        self._calls: dict[int, ServerCall] = {}
        self.idle = asyncio.Event()
        self.idle.set()
        self._data_ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._drained = asyncio.Event()
        self._closed = False
        self.max_pending_bytes = 0  # high-water mark of the send buffer, for observability

    @property
    def call_count(self) -> int:
        """Calls running on this connection."""
        return len(self._calls)

    async def run(self) -> None:
        """Serves the connection until the peer goes away."""
        writer = asyncio.create_task(self._write_loop(), name="ws-writer")
        try:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    message = await self._transport.recv()
                    for event in self.mux.receive(message):
                        self._dispatch(event)
                    self._data_ready.set()
        finally:
            self._closed = True
            self._space.set()
            for call in list(self._calls.values()):
                call.terminate(grpc.StatusCode.UNAVAILABLE, "connection lost", notify_peer=False)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def shutdown(self, code: int, reason: str, flush_timeout: float = 1.0) -> None:
        """Ends every call with UNAVAILABLE, flushes their ends, then closes the socket."""
        if self._closed:
            return
        for call in list(self._calls.values()):
            call.terminate(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        self._drained.clear()
        self._data_ready.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), flush_timeout)
        await self._transport.close(code, reason)

    # Used by calls.

    async def find_handler(self, method: str, metadata: grpc.aio.Metadata) -> Handler | None:
        """The handler registered for a method path."""
        return await self._registry.find(method, metadata)

    def serialize(
        self, message: Any, serializer: Callable[[Any], bytes], call: ServerCall
    ) -> bytes:
        """Serializes a response, once per object across broadcast writes."""
        return self._cache.serialize(message, serializer, call)

    async def send_message(self, call_id: int, payload: bytes, window: asyncio.Event) -> None:
        """Queues a response message, first waiting for the call's flow-control window
        (``window`` is set when it reopens) and while the connection's send buffer is full."""
        while not self.mux.can_send(call_id) and not self._closed:
            window.clear()
            await window.wait()
        while self.mux.write_queue.pending_bytes >= self.limits.send_buffer_bytes and not self._closed:
            self._space.clear()
            await self._space.wait()
        if self._closed:
            raise CallStateError("connection closed")
        self.mux.send_message(call_id, payload)
        self.max_pending_bytes = max(self.max_pending_bytes, self.mux.write_queue.pending_bytes)
        self._data_ready.set()

    def consumed(self, call_id: int, payload_bytes: int) -> None:
        """The handler read a request: widen the client's window for the call."""
        self.mux.consumed(call_id, payload_bytes)
        self._data_ready.set()

    def send_headers(self, call_id: int, metadata: MetadataPairs) -> None:
        """Queues response headers."""
        self.mux.send_headers(call_id, metadata)
        self._data_ready.set()

    def send_end(
        self, call_id: int, code: grpc.StatusCode, details: str, trailers: MetadataPairs | None
    ) -> None:
        """Queues a call's end unless the call is already over on the wire."""
        if self.mux.is_open(call_id):
            self.mux.end(call_id, code, details, trailers)
            self._data_ready.set()

    def forget(self, call_id: int) -> None:
        """Drops a finished call."""
        self._calls.pop(call_id, None)
        if not self._calls:
            self.idle.set()

    # Internals.

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, CallStarted):
            self._start(event)
            return
        if isinstance(event, FrameDiscarded | PeerProtocolError):
            _LOG.warning("%s: %s", self.info.peer, event)
            return
        call = self._calls.get(event.call_id)
        if call is None:
            return
        if isinstance(event, MessageReceived):
            call.deliver(event.payload)
        elif isinstance(event, HalfClosed):
            call.deliver_half_close()
        elif isinstance(event, WindowOpened):
            call.window.set()
        elif isinstance(event, CallCancelled):
            call.terminate(grpc.StatusCode.CANCELLED, "Cancelled by the client", notify_peer=False)
        elif isinstance(event, CallFailed):
            _LOG.info("%s: call %d failed: %s", self.info.peer, event.call_id, event.details)
            call.terminate(event.code, event.details, notify_peer=False)

    def _start(self, event: CallStarted) -> None:
        if self._closed or not self._accepting():
            self.mux.end(event.call_id, grpc.StatusCode.UNAVAILABLE, "server is shutting down")
            return
        metadata = event.metadata
        authorization = self.info.headers.get("authorization")
        if authorization is not None and "authorization" not in metadata:
            metadata.add("authorization", authorization)
        call = ServerCall(self, event.call_id, event.method, metadata, event.timeout, self.info)
        self._calls[event.call_id] = call
        self.idle.clear()
        call.start()

    async def _write_loop(self) -> None:
        try:
            await self._write_batches()
        except ConnectionClosed:
            pass  # the reader notices too and ends the calls
        finally:
            self._drained.set()  # nothing more will be flushed

    async def _write_batches(self) -> None:
        while True:
            batch = self.mux.data_to_send()
            if batch is None:
                self._space.set()
                self._drained.set()
                self._data_ready.clear()
                await self._data_ready.wait()
                continue
            if self.mux.write_queue.pending_bytes < self.limits.send_buffer_bytes:
                self._space.set()  # refill while this batch is in flight
            await self._transport.send(batch)
