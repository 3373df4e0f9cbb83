"""The server end of the typed framing: one client connection's calls over the shared
``wire.connection.ConnectionDriver`` (reader, batching writer, back-pressure)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from server.ws.call import ServerCall
from server.ws.context import ConnectionInfo
from server.ws.registry import Handler, MethodRegistry
from server.ws.serialize_cache import SerializationCache
from syncwire.ws.v1 import frame_pb2
from wire.codec import MessageRecordCache
from wire.connection import ConnectionDriver
from wire.events import (
    CallCancelled,
    CallFailed,
    CallStarted,
    Event,
    FrameDiscarded,
    HalfClosed,
    MessageReceived,
    PeerProtocolError,
    PongReceived,
    SettingsReceived,
    WindowOpened,
)
from wire.flag import Flag
from wire.metadata import InvocationMetadata, MetadataPairs, metadatum
from wire.mux import ServerMultiplexer
from wire.transport import MessageTransport

_LOG = logging.getLogger(__name__)


# Calls one connection may have open at once by default (HTTP/2's MAX_CONCURRENT_STREAMS
# plays this part for native gRPC).
DEFAULT_MAX_CONCURRENT_CALLS = 1000
CONCURRENCY_EXCEEDED_DETAILS = "Concurrent RPC limit exceeded!"  # grpc.aio's words

# Broadcast payloads encoded into call records once per call id, for every connection.
_RECORDS = MessageRecordCache()


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Per-connection bounds: largest call message accepted, bytes queued before writers
    wait, calls open at once (the call over it ends RESOURCE_EXHAUSTED)."""

    max_message_bytes: int
    send_buffer_bytes: int
    max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS


class ServerConnectionDriver(ConnectionDriver[ServerMultiplexer]):
    """One client connection speaking the typed framing: starts a ``ServerCall`` per
    CallStart and routes the call's frames to it."""

    __slots__ = (
        "_accepting",
        "_cache",
        "_calls",
        "_keepalive_times",
        "_registry",
        "_settings",
        "idle",
        "info",
        "limits",
    )

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
        settings: frame_pb2.ConnectionSettings | None = None,
        keepalive: tuple[float, float] | None = None,
    ) -> None:
        """``settings``: sent first, on call 0. ``keepalive``: (interval, timeout) of the
        call-0 Pings, in seconds (None: none)."""
        super().__init__(
            transport,
            ServerMultiplexer(
                max_receive_bytes=limits.max_message_bytes, max_send_bytes=peer_max_message_bytes
            ),
            send_buffer_bytes=limits.send_buffer_bytes,
            peer=info.peer,
        )
        self.info = info
        self.limits = limits
        self._registry = registry
        self._cache = cache
        self._accepting = accepting
        self._settings = settings
        self._keepalive_times = keepalive
        self._calls: dict[int, ServerCall] = {}
        self.idle = Flag()  # set while no call runs
        self.idle.set()

    @property
    def call_count(self) -> int:
        """Calls running on this connection."""
        return len(self._calls)

    async def run(self) -> None:
        """Sends the ConnectionSettings, starts the call-0 keepalive, then serves the
        connection until it closes (``ConnectionDriver.run``)."""
        if self._settings is not None:
            self.mux.send_settings(self._settings)
            self.flush()
        if self._keepalive_times is not None:
            self.start_keepalive(*self._keepalive_times)
        await super().run()

    async def shutdown(self, code: int, reason: str, flush_timeout: float = 1.0) -> None:
        """Ends every call with UNAVAILABLE, flushes their ends (for at most
        ``flush_timeout`` seconds), then closes the socket with ``code`` and ``reason``."""
        if self.closed:
            return
        for call in list(self._calls.values()):
            call.terminate(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        await self.drain(flush_timeout)
        await self._transport.close(code, reason)

    # Used by calls.

    async def find_handler(self, method: str, metadata: InvocationMetadata) -> Handler | None:
        """The handler registered for a method path."""
        return await self._registry.find(method, metadata)

    def serialize(
        self, message: Any, serializer: Callable[[Any], bytes], call: ServerCall
    ) -> bytes:
        """Serializes a response, once per object across broadcast writes."""
        return self._cache.serialize(message, serializer, call)

    def try_send_message(self, call_id: int, payload: bytes, shared: bool = True) -> bool:
        """Queues one response message only if that needs no waiting: the call open, its
        flow-control window open, the send buffer below ``send_buffer_bytes``; False,
        nothing queued, otherwise (then ``send_message``). It goes out at the end of
        this loop iteration (``schedule_flush``). ``shared``: the payload object may go
        to other calls too (a broadcast), so its record is encoded once per call id.
        Raises MessageTooLargeError over the peer's limit."""
        mux = self.mux
        if (
            self.closed
            or mux.write_queue.pending_bytes >= self.send_buffer_bytes
            or not mux.try_send_message(call_id, payload, _RECORDS if shared else None)
        ):
            return False
        self.max_pending_bytes = max(self.max_pending_bytes, mux.write_queue.pending_bytes)
        self.schedule_flush()
        return True

    def send_headers(self, call_id: int, metadata: MetadataPairs) -> None:
        """Queues response headers."""
        self.mux.send_headers(call_id, metadata)
        self.schedule_flush()

    def send_end(
        self, call_id: int, code: grpc.StatusCode, details: str, trailers: MetadataPairs | None
    ) -> None:
        """Queues a call's end unless the call is already over on the wire."""
        if self.mux.is_open(call_id):
            self.mux.end(call_id, code, details, trailers)
            self.schedule_flush()

    def forget(self, call_id: int) -> None:
        """Drops a finished call."""
        self._calls.pop(call_id, None)
        if not self._calls:
            self.idle.set()

    # ConnectionDriver hooks.

    def _connection_lost(self, details: str) -> None:
        for call in list(self._calls.values()):
            call.terminate(grpc.StatusCode.UNAVAILABLE, "connection lost", notify_peer=False)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, CallStarted):
            self._start(event)
            return
        if isinstance(event, PeerProtocolError) and self._peer_predates_keepalive(event):
            _LOG.debug("%s predates call-0 settings and pings: %s", self.info.peer, event)
            return
        if isinstance(event, FrameDiscarded | PeerProtocolError):
            self._log_discards(event)
            return
        if isinstance(event, PongReceived | SettingsReceived):
            return  # any frame proves the peer alive (ConnectionDriver.last_received)
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
        if self.closed or not self._accepting():
            self.mux.end(event.call_id, grpc.StatusCode.UNAVAILABLE, "server is shutting down")
            return
        if len(self._calls) >= self.limits.max_concurrent_calls:
            self.mux.end(
                event.call_id, grpc.StatusCode.RESOURCE_EXHAUSTED, CONCURRENCY_EXCEEDED_DETAILS
            )
            return
        metadata = event.metadata
        authorization = self.info.headers.get("authorization")
        if authorization is not None and all(key != "authorization" for key, _ in metadata):
            metadata = (*metadata, metadatum("authorization", authorization))
        call = ServerCall(self, event.call_id, event.method, metadata, event.timeout, self.info)
        self._calls[event.call_id] = call
        self.idle.clear()
        call.start()
