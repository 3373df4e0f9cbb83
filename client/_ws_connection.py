"""Drives one connection's ClientMultiplexer: one reader, one batching writer, and the
sinks of the calls multiplexed over it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import grpc
import grpc.aio
from websockets.exceptions import ConnectionClosed

from wire.events import (
    CallEnded,
    CallFailed,
    Event,
    FrameDiscarded,
    HeadersReceived,
    MessageReceived,
    PeerProtocolError,
    WindowOpened,
)
from wire.metadata import MetadataPairs
from wire.mux import CallStateError, ClientMultiplexer
from wire.protocol import CLOSE_NORMAL
from wire.transport import MessageTransport

_LOG = logging.getLogger(__name__)


class CallSink(Protocol):
    """What a connection tells a call; every method must return without waiting."""

    def on_headers(self, metadata: grpc.aio.Metadata) -> None: ...

    def on_message(self, payload: bytes) -> None: ...

    def on_window_opened(self) -> None: ...

    def on_end(self, code: grpc.StatusCode, details: str, trailers: grpc.aio.Metadata) -> None: ...


class ClientConnection:
    """One open pipe to the server carrying any number of calls."""

    def __init__(
        self,
        transport: MessageTransport,
        *,
        max_receive_bytes: int | None,
        max_send_bytes: int | None,
        send_buffer_bytes: int,
        on_closed: Callable[[ClientConnection], None],
    ) -> None:
        self._transport = transport
        self.mux = ClientMultiplexer(
            max_receive_bytes=max_receive_bytes, max_send_bytes=max_send_bytes
        )
        self._send_buffer_bytes = send_buffer_bytes
        self._on_closed = on_closed
        self._sinks: dict[int, CallSink] = {}
        self._data_ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self.closed = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def usable(self) -> bool:
        """Whether new calls may start here."""
        return not self.closed and not self.mux.exhausted

    @property
    def call_count(self) -> int:
        """Calls open on this connection."""
        return len(self._sinks)

    def start(self) -> None:
        """Starts the reader and writer tasks."""
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="ws-client-reader"),
            asyncio.create_task(self._write_loop(), name="ws-client-writer"),
        ]

    def start_call(
        self, method: str, metadata: MetadataPairs | None, timeout: float | None, sink: CallSink
    ) -> int:
        """Opens a call; raises MetadataError, CallIdsExhaustedError or CallStateError."""
        if self.closed:
            raise CallStateError("connection closed")
        call_id = self.mux.start(method, metadata, timeout)
        self._sinks[call_id] = sink
        self._data_ready.set()
        return call_id

    async def send_message(self, call_id: int, payload: bytes, window: asyncio.Event) -> None:
        """Queues a request, waiting for the call's flow-control window (``window`` is set
        when it reopens) and while the send buffer is full; raises MessageTooLargeError,
        or CallStateError once the call or connection is over."""
        while not self.mux.can_send(call_id) and not self.closed:
            window.clear()
            await window.wait()
        while self.mux.write_queue.pending_bytes >= self._send_buffer_bytes and not self.closed:
            self._space.clear()
            await self._space.wait()
        if self.closed:
            raise CallStateError("connection closed")
        self.mux.send_message(call_id, payload)
        self._data_ready.set()

    def consumed(self, call_id: int, payload_bytes: int) -> None:
        """The application read a response: widen the server's window for the call."""
        self.mux.consumed(call_id, payload_bytes)
        self._data_ready.set()

    def half_close(self, call_id: int) -> None:
        """Ends the call's requests (no-op once the call is over)."""
        if self.mux.is_open(call_id):
            self.mux.half_close(call_id)
            self._data_ready.set()

    def cancel(self, call_id: int) -> None:
        """Abandons the call; the server cancels its handler."""
        self._sinks.pop(call_id, None)
        self.mux.cancel(call_id)
        self._data_ready.set()

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Closes the pipe; open calls end with UNAVAILABLE."""
        with contextlib.suppress(ConnectionClosed):
            await self._transport.close(code, reason)
        self._lost(f"connection closed by the client: {reason}" if reason else "channel closed")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _lost(self, details: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._space.set()
        sinks, self._sinks = self._sinks, {}
        for sink in sinks.values():
            sink.on_end(grpc.StatusCode.UNAVAILABLE, details, grpc.aio.Metadata())
        current = asyncio.current_task()
        for task in self._tasks:  # a lost connection leaves no writer or reader behind
            if task is not current:
                task.cancel()
        self._on_closed(self)

    async def _read_loop(self) -> None:
        try:
            while True:
                message = await self._transport.recv()
                for event in self.mux.receive(message):
                    self._dispatch(event)
                self._data_ready.set()
        except ConnectionClosed as exc:
            close = exc.rcvd or exc.sent
            detail = f"{close.code} {close.reason}".strip() if close else "no close frame"
            self._lost(f"connection lost ({detail})")
        except Exception as exc:  # a broken transport must still end the calls
            _LOG.exception("WebSocket reader failed")
            self._lost(f"connection failed: {exc!r}")

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, FrameDiscarded | PeerProtocolError):
            _LOG.warning("syncwire framing: %s", event)
            return
        if isinstance(event, CallEnded | CallFailed):
            sink = self._sinks.pop(event.call_id, None)
            if sink is not None:
                trailers = event.trailers if isinstance(event, CallEnded) else grpc.aio.Metadata()
                sink.on_end(event.code, event.details, trailers)
            return
        sink = self._sinks.get(event.call_id)
        if sink is None:
            return
        if isinstance(event, HeadersReceived):
            sink.on_headers(event.metadata)
        elif isinstance(event, MessageReceived):
            sink.on_message(event.payload)
        elif isinstance(event, WindowOpened):
            sink.on_window_opened()

    async def _write_loop(self) -> None:
        try:
            while True:
                batch = self.mux.data_to_send()
                if batch is None:
                    self._space.set()
                    self._data_ready.clear()
                    await self._data_ready.wait()
                    continue
                if self.mux.write_queue.pending_bytes < self._send_buffer_bytes:
                    self._space.set()  # refill while this batch is in flight
                await self._transport.send(batch)
        except ConnectionClosed:
            pass  # the reader reports the loss
