"""The client end of the typed framing: the calls of one channel over the shared
``wire.connection.ConnectionDriver`` (reader, batching writer, back-pressure)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

import grpc
import grpc.aio
from websockets.exceptions import ConnectionClosed

from syncwire.ws.v1 import frame_pb2
from wire.connection import ConnectionDriver
from wire.deadline import DeadlineError, duration_to_timeout
from wire.events import (
    CallEnded,
    CallFailed,
    Event,
    FrameDiscarded,
    HeadersReceived,
    MessageReceived,
    PeerProtocolError,
    PongReceived,
    SettingsReceived,
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


class ClientConnectionDriver(ConnectionDriver[ClientMultiplexer]):
    """One open pipe to the server carrying any number of calls."""

    def __init__(
        self,
        transport: MessageTransport,
        *,
        max_receive_bytes: int | None,
        max_send_bytes: int | None,
        send_buffer_bytes: int,
        on_closed: Callable[[ClientConnectionDriver], None],
        keepalive: tuple[float, float] | None = None,
    ) -> None:
        """``keepalive``: (interval, timeout) in seconds of call-0 Pings to send, or None
        for none; the server's ConnectionSettings replace the numbers when it has them."""
        super().__init__(
            transport,
            ClientMultiplexer(max_receive_bytes=max_receive_bytes, max_send_bytes=max_send_bytes),
            send_buffer_bytes=send_buffer_bytes,
            task_prefix="ws-client",
            peer="syncwire server",
        )
        self._on_closed = on_closed
        self._sinks: dict[int, CallSink] = {}
        self._task: asyncio.Task[None] | None = None
        self._keepalive_times = keepalive
        self.settings: frame_pb2.ConnectionSettings | None = None  # the server's, once read

    @property
    def usable(self) -> bool:
        """Whether new calls may start here."""
        return not self.closed and not self.mux.exhausted

    @property
    def call_count(self) -> int:
        """Calls open on this connection."""
        return len(self._sinks)

    def start(self) -> None:
        """Starts driving the connection (reader and writer) in a task."""
        self._task = asyncio.create_task(self.run(), name="ws-client-reader")
        if self._keepalive_times is not None:
            self.start_keepalive(*self._keepalive_times)

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
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _apply(self, settings: frame_pb2.ConnectionSettings) -> None:
        """The server's ConnectionSettings: the multiplexer already bounds sent messages
        by its max_message_bytes; its ping timing replaces ours for call-0 Pings."""
        self.settings = settings
        if self._keepalive_times is None or not settings.HasField("ping_interval"):
            return
        try:
            interval = duration_to_timeout(settings.ping_interval)
            timeout = duration_to_timeout(settings.ping_timeout) or interval
        except DeadlineError:
            _LOG.warning("syncwire framing: ignoring invalid ping timing in %s", settings)
            return
        if interval > 0:
            self.start_keepalive(interval, timeout)

    # ConnectionDriver hooks.

    def _connection_lost(self, details: str) -> None:
        sinks, self._sinks = self._sinks, {}
        for sink in sinks.values():
            sink.on_end(grpc.StatusCode.UNAVAILABLE, details, grpc.aio.Metadata())
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()  # a lost connection leaves no writer or reader behind
        self._on_closed(self)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, SettingsReceived):
            self._apply(event.settings)
            return
        if isinstance(event, PongReceived):
            return  # any frame proves the server alive (ConnectionDriver.last_received)
        if isinstance(event, PeerProtocolError) and self._peer_predates_keepalive(event):
            return  # a server from before call-0 Pings: WebSocket pings must do
        if isinstance(event, FrameDiscarded | PeerProtocolError):
            self._log_discards(event)
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
