"""WebSocketServer: a grpc.aio.Server that serves registered servicers over the
WebSocket framing (see docs/protocol.md, "WebSocket framing")."""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio
from websockets.asyncio.server import Server as WsListener
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from server.ws.address_limit import AddressCounter
from server.ws.connection import (
    DEFAULT_MAX_CONCURRENT_CALLS,
    ServerConnectionDriver,
    ServerLimits,
)
from server.ws.context import ConnectionInfo
from server.ws.listener import bind, connection_info
from server.ws.origin import OriginPolicy
from server.ws.registry import Handler, MethodRegistry
from server.ws.serialize_cache import SerializationCache
from syncwire.ws.v1 import frame_pb2
from wire.deadline import timeout_to_duration
from wire.deflate import DeflateSettings
from wire.keepalive import FailFastKeepalive
from wire.mux import DEFAULT_MAX_MESSAGE_BYTES, INITIAL_WINDOW
from wire.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TRY_AGAIN_LATER,
    MAX_MESSAGE_BYTES_HEADER,
    PING_INTERVAL_SECONDS,
    PING_TIMEOUT_SECONDS,
    SUBPROTOCOL_PROTOBUF,
)
from wire.transport import MessageTransport
from wire.write_queue import BATCH_BYTES

_LOG = logging.getLogger(__name__)

_PROTOBUF = Subprotocol(SUBPROTOCOL_PROTOBUF)

LegacyHandler = Callable[[ServerConnection], Awaitable[None]]
"""Serves a connection that offered no subprotocol (a legacy JSON client)."""


class _Connection(FailFastKeepalive, ServerConnection):
    """A server connection whose keepalive fails a silent peer at once (no closing
    handshake to wait out), so its session, presence and slot go at once."""


def _select_subprotocol(
    connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """The typed framing when offered. Otherwise the first subprotocol offered, so that
    the handshake completes and the close that refuses it (1002, with its reason) can be
    read: a browser fails a connection whose response names none of the subprotocols it
    offered, and shows only 1006. No subprotocol offered: none (legacy JSON client)."""
    if _PROTOBUF in offered:
        return _PROTOBUF
    return offered[0] if offered else None


class WebSocketServer(grpc.aio.Server):
    """Serves gRPC services over one multiplexed WebSocket per client.

    Register servicers exactly as on a grpc.aio server
    (``add_XServicer_to_server(servicer, ws_server)``), add ports, ``await start()``.
    Connections offering ``syncwire-protobuf`` get the typed framing; connections offering
    no subprotocol go to ``legacy_handler`` (refused with close code 1008 without one).

    A typed connection starts with the server's ConnectionSettings on call 0; with
    ``ping_interval`` set, the server sends a WebSocket ping and a call-0 Ping every
    ``ping_interval`` seconds and drops a peer that answers neither within
    ``ping_timeout`` (docs/protocol.md, "Keepalive"). Handshakes carrying an ``Origin``
    (browsers) must come from ``allowed_origins`` (glob patterns) or the server's own
    host; they are refused after the handshake, with a close code and reason a browser
    can read (docs/protocol.md, "Refusals").

    Per connection: at most ``max_concurrent_calls`` calls run at once (a call started
    beyond that ends at once with RESOURCE_EXHAUSTED, ``Concurrent RPC limit exceeded!``,
    grpc.aio's words); a client sending more than ``wire.mux.DISCARD_LIMIT`` frames that
    belong to no call (or starts that are refused) within ``DISCARD_WINDOW_SECONDS`` is
    closed with 1008. See docs/protocol.md, "Limits".
    """

    def __init__(
        self,
        *,
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
        legacy_handler: LegacyHandler | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS,
        max_connections: int = 1000,
        max_connections_per_address: int = 0,
        ping_interval: float | None = PING_INTERVAL_SECONDS,
        ping_timeout: float | None = PING_TIMEOUT_SECONDS,
        compression: bool | DeflateSettings = True,
        send_buffer_bytes: int = 256 * 1024,
        serialization_cache_size: int = 128,
        open_timeout: float | None = 10.0,
        close_timeout: float | None = 10.0,
        reuse_port: bool = False,
        allowed_origins: Sequence[str] = (),
        server_id: str | None = None,
    ) -> None:
        """`reuse_port`: bind with SO_REUSEPORT (workers of one host share the port).
        `allowed_origins`: glob patterns of browser origins allowed besides the server's
        own host (server/ws/origin.py). `server_id`: sent in ConnectionSettings (default:
        a random id per server)."""
        self._reuse_port = reuse_port
        self._registry = MethodRegistry(interceptors)
        self._origins = OriginPolicy(allowed_origins)
        self._keepalive = (ping_interval, ping_timeout or ping_interval) if ping_interval else None
        self._settings = frame_pb2.ConnectionSettings(
            max_message_bytes=max_message_bytes,
            server_id=server_id or uuid.uuid4().hex,
            max_concurrent_calls=max_concurrent_calls,
            initial_window_bytes=INITIAL_WINDOW,
        )
        if self._keepalive is not None:
            self._settings.ping_interval.CopyFrom(timeout_to_duration(self._keepalive[0]))
            self._settings.ping_timeout.CopyFrom(timeout_to_duration(self._keepalive[1]))
        self._legacy_handler = legacy_handler
        self._limits = ServerLimits(
            max_message_bytes=max_message_bytes,
            send_buffer_bytes=send_buffer_bytes,
            max_concurrent_calls=max_concurrent_calls,
        )
        self._max_connections = max_connections
        self._addresses = AddressCounter(max_connections_per_address)
        self._ws_options: dict[str, Any] = {
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            # permessage-deflate with DeflateSettings (True: their defaults), or none.
            "compression": None,
            "extensions": _deflate_extensions(compression),
            # Bounded after decompression by websockets; one max-size call message plus
            # batching headroom fits, so an oversize call message fails only its call.
            "max_size": max_message_bytes + BATCH_BYTES,
            "open_timeout": open_timeout,
            "close_timeout": close_timeout,
        }
        self._cache = SerializationCache(serialization_cache_size)
        self._pending: list[tuple[socket.socket, ssl.SSLContext | None]] = []
        self._listeners: list[WsListener] = []
        self._drivers: set[ServerConnectionDriver] = set()
        self._open_connections = 0
        self._started = False
        self._stopping = False
        self._terminated = asyncio.Event()

    # Registration (what generated add_*Servicer_to_server calls).

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        """Adds generic handlers; looked up after registered methods."""
        self._registry.add_generic(generic_rpc_handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, Handler]
    ) -> None:
        """Adds one service's method handlers by method name."""
        self._registry.add_registered(service_name, method_handlers)

    def service_names(self) -> list[str]:
        """Full names of the services registered by name, in registration order (generic
        handlers have no name to report)."""
        return self._registry.service_names()

    # Ports.

    def add_insecure_port(self, address: str) -> int:
        """Listens on ``host:port`` (port 0 = ephemeral) for ws://; returns the bound port."""
        return self._add_port(address, None)

    def add_secure_port(
        self, address: str, server_credentials: grpc.ServerCredentials | ssl.SSLContext
    ) -> int:
        """Listens on ``host:port`` for wss://, with TLS from an ``ssl.SSLContext``
        (grpc.ServerCredentials are opaque and cannot configure it); returns the port."""
        if not isinstance(server_credentials, ssl.SSLContext):
            raise TypeError("WebSocketServer.add_secure_port needs an ssl.SSLContext")
        return self._add_port(address, server_credentials)

    def _add_port(self, address: str, tls: ssl.SSLContext | None) -> int:
        if self._started:
            raise RuntimeError("ports must be added before start()")
        sock = bind(address, self._reuse_port)
        self._pending.append((sock, tls))
        port: int = sock.getsockname()[1]
        return port

    def ports(self) -> list[int]:
        """The bound ports, in the order they were added."""
        return [sock.getsockname()[1] for sock, _ in self._pending]

    @property
    def open_connections(self) -> int:
        """Accepted WebSocket connections not yet closed (typed and legacy)."""
        return self._open_connections

    @property
    def connections(self) -> list[ServerConnectionDriver]:
        """Open typed-framing connections (WebSocket and in-process)."""
        return list(self._drivers)

    # Lifecycle.

    async def start(self) -> None:
        """Starts serving on every added port."""
        if self._started:
            raise RuntimeError("server already started")
        self._started = True
        for sock, tls in self._pending:
            listener = await serve(
                self._handle,
                sock=sock,
                ssl=tls,
                select_subprotocol=_select_subprotocol,
                process_request=self._process_request,
                process_response=self._process_response,
                create_connection=_Connection,
                **self._ws_options,
            )
            self._listeners.append(listener)

    async def stop(self, grace: float | None = None) -> None:
        """Stops accepting connections and calls; lets running calls finish for up to
        ``grace`` seconds (None: not at all); ends the rest with UNAVAILABLE; closes every
        connection with 1001 (going away)."""
        if self._stopping:
            await self._terminated.wait()
            return
        self._stopping = True
        if not self._started:  # ports added but never served: just release them
            for sock, _ in self._pending:
                sock.close()
        for listener in self._listeners:
            listener.server.close()  # stop accepting; open connections carry on for now
        if grace:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._calls_finished(), grace)
        await asyncio.gather(
            *(
                driver.shutdown(CLOSE_GOING_AWAY, "server shutting down")
                for driver in list(self._drivers)
            )
        )
        for listener in self._listeners:
            listener.close()  # anything left (legacy connections) closes with 1001
        await asyncio.gather(*(listener.wait_closed() for listener in self._listeners))
        self._terminated.set()

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Waits until stop() completed; True when ``timeout`` ran out first, as in grpc."""
        if self._terminated.is_set():
            return False
        try:
            await asyncio.wait_for(self._terminated.wait(), timeout)
        except TimeoutError:
            return True
        return False

    async def _calls_finished(self) -> None:
        while busy := [driver for driver in self._drivers if driver.call_count]:
            await asyncio.gather(*(driver.idle.wait() for driver in busy))

    # Connections.

    @property
    def max_message_bytes(self) -> int:
        """Largest call message accepted from clients."""
        return self._limits.max_message_bytes

    async def serve_transport(
        self,
        transport: MessageTransport,
        *,
        peer: str = "inprocess",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Serves the typed framing over any message pipe (the in-process channel uses an
        in-memory one) until it closes; ``headers`` stand in for handshake headers."""
        info = ConnectionInfo(
            peer=peer, headers=dict(headers or {}), subprotocol=SUBPROTOCOL_PROTOBUF
        )
        await self._serve(transport, info)

    async def _serve(self, transport: MessageTransport, info: ConnectionInfo) -> None:
        driver = ServerConnectionDriver(
            transport,
            info,
            limits=self._limits,
            registry=self._registry,
            cache=self._cache,
            peer_max_message_bytes=info.receive_limit,
            accepting=lambda: not self._stopping,
            settings=self._settings,
            keepalive=self._keepalive,
        )
        self._drivers.add(driver)
        try:
            await driver.run()
        finally:
            self._drivers.discard(driver)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if "Origin" in request.headers:
            return None  # a browser: refused after the handshake, where it can read why
        if self._open_connections >= self._max_connections:
            return connection.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections, try again later.\n"
            )
        if self._addresses.full(_address_of(connection)):
            response = connection.respond(
                http.HTTPStatus.TOO_MANY_REQUESTS,
                "Too many connections from your address, try again later.\n",
            )
            response.headers["Retry-After"] = "1"
            return response
        return None

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS:
            response.headers[MAX_MESSAGE_BYTES_HEADER] = str(self._limits.max_message_bytes)
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        address = _address_of(connection)
        crowded = self._addresses.full(address)  # raced past _process_request's check
        self._open_connections += 1
        self._addresses.add(address)
        try:
            await self._dispatch_connection(connection, crowded)
        finally:
            self._open_connections -= 1
            self._addresses.remove(address)

    async def _dispatch_connection(self, connection: ServerConnection, crowded: bool) -> None:
        request_headers = connection.request.headers if connection.request else Headers()
        refused = self._origins.refusal(request_headers.get("Origin"), request_headers.get("Host"))
        if refused is not None:
            await connection.close(CLOSE_POLICY_VIOLATION, refused)
            return
        if self._open_connections > self._max_connections:
            await connection.close(CLOSE_TRY_AGAIN_LATER, "too many connections")
            return
        if crowded:
            await connection.close(CLOSE_TRY_AGAIN_LATER, "too many connections from your address")
            return
        if connection.subprotocol == SUBPROTOCOL_PROTOBUF:
            await self._serve(connection, connection_info(connection))
            return
        offered = request_headers.get_all("Sec-WebSocket-Protocol")
        if offered:
            await connection.close(
                CLOSE_PROTOCOL_ERROR,
                f"unsupported subprotocol {', '.join(offered)}; offer {SUBPROTOCOL_PROTOBUF}",
            )
        elif self._legacy_handler is not None:
            await self._legacy_handler(connection)
        else:
            await connection.close(
                CLOSE_POLICY_VIOLATION,
                f"subprotocol required: offer {SUBPROTOCOL_PROTOBUF} (no legacy JSON endpoint)",
            )


def _deflate_extensions(
    compression: bool | DeflateSettings,
) -> list[ServerPerMessageDeflateFactory]:
    """websockets server extensions for ``compression`` (False: none)."""
    if compression is False:
        return []
    settings = DeflateSettings() if compression is True else compression
    return [settings.server_extension()]


def _address_of(connection: ServerConnection) -> str | None:
    """The client IP address of a connection (None if the socket has none)."""
    address = connection.remote_address
    return str(address[0]) if isinstance(address, tuple) and address else None
