"""Where a client connects and how it opens a channel there.

An endpoint is a URL: ``grpc://host:port`` (``grpcs://`` for TLS) for native gRPC,
``ws://host:port[/path]`` (``wss://``) for the WebSocket framing, or an in-process
endpoint made with `Endpoint.in_process`. Every endpoint yields one `grpc.aio.Channel`,
so everything above this module is transport-agnostic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import grpc
import grpc.aio

from wire.protocol import PING_INTERVAL_SECONDS, PING_TIMEOUT_SECONDS

from .inprocess import InProcessChannel, InProcessServer
from .ws_channel import WebSocketChannel

Transport = Literal["grpc", "websocket", "inprocess"]

_SCHEMES: dict[str, tuple[Transport, bool]] = {
    "grpc": ("grpc", False),
    "grpcs": ("grpc", True),
    "ws": ("websocket", False),
    "wss": ("websocket", True),
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place to reach a syncwire server.

    Attributes:
        url: The endpoint as written (also its identity in state changes).
        transport: "grpc", "websocket" or "inprocess".
        target: ``host:port`` for gRPC, the URL for WebSocket, a name in-process.
        tls: Whether the connection uses TLS.
        factory: For in-process (or custom) endpoints, builds the channel.
    """

    url: str
    transport: Transport
    target: str
    tls: bool = False
    factory: Callable[[], grpc.aio.Channel] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """An endpoint from ``grpc://``, ``grpcs://``, ``ws://`` or ``wss://`` URL."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise ValueError(
                f"unsupported endpoint {url!r}: use grpc://, grpcs://, ws:// or wss://"
            )
        if not parts.hostname or parts.port is None:
            raise ValueError(f"endpoint {url!r} needs a host and a port")
        transport, tls = _SCHEMES[scheme]
        target = url if transport == "websocket" else parts.netloc
        return cls(url=url, transport=transport, target=target, tls=tls)

    @classmethod
    def in_process(cls, server: InProcessServer, name: str = "local") -> Endpoint:
        """An endpoint served by `server` (a WebSocketServer) in this process."""
        return cls(
            url=f"inprocess://{name}",
            transport="inprocess",
            target=name,
            factory=lambda: InProcessChannel(server),
        )

    @classmethod
    def custom(
        cls, url: str, factory: Callable[[], grpc.aio.Channel], transport: Transport = "grpc"
    ) -> Endpoint:
        """An endpoint whose channel `factory` builds (custom credentials, options)."""
        return cls(url=url, transport=transport, target=url, factory=factory)


def as_endpoint(value: str | Endpoint) -> Endpoint:
    """`value` as an Endpoint (a URL is parsed; raises ValueError for a bad one)."""
    return value if isinstance(value, Endpoint) else Endpoint.parse(value)


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """Channel options derived from the client configuration.

    gRPC keepalive must respect the server's policy (it tolerates client pings every
    5 s, ``grpc.http2.min_ping_interval_without_data_ms``); pinging faster earns a
    GOAWAY ``too_many_pings``, so the interval is never allowed below that.

    ``connect_timeout`` (seconds) bounds opening a connection: the WebSocket opening
    handshake (websockets' ``open_timeout``) and, for gRPC, the TCP connect. gRPC also
    uses its keepalive timeout as the socket's TCP_USER_TIMEOUT (gRFC A18), which would
    abort a connect to a host that does not answer after ``keepalive_timeout``; the
    channel's keepalive timeout is therefore at least ``connect_timeout``. `SyncClient`
    sets it from `ClientConfig.connect_timeout`.
    """

    keepalive_time: float = 10.0
    keepalive_timeout: float = 10.0
    max_receive_message_bytes: int = 4 * 1024 * 1024
    ws_ping_interval: float | None = PING_INTERVAL_SECONDS
    ws_ping_timeout: float | None = PING_TIMEOUT_SECONDS
    ws_close_timeout: float | None = 2.0
    """Seconds closing a WebSocket channel waits for the server's closing handshake
    before aborting the TCP connection (a dropped, possibly half-open connection's
    channel is closed in the background; this bounds how long it lingers)."""
    extra_grpc_options: tuple[tuple[str, int | str], ...] = ()
    connect_timeout: float = 10.0

    def grpc_options(self) -> list[tuple[str, int | str]]:
        """grpc channel arguments: keepalive (interval at least 5 s; timeout at least
        `connect_timeout`), receive size limit, a subchannel pool of the channel's own,
        then `extra_grpc_options`.
        """
        options: list[tuple[str, int | str]] = [
            ("grpc.keepalive_time_ms", max(int(self.keepalive_time * 1000), 5_000)),
            (
                "grpc.keepalive_timeout_ms",
                int(max(self.keepalive_timeout, self.connect_timeout) * 1000),
            ),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            # A channel owns its connection: a replacement channel must not pick up the
            # old (possibly half-open) connection from grpc's global subchannel pool.
            ("grpc.use_local_subchannel_pool", 1),
        ]
        return options + list(self.extra_grpc_options)


ChannelFactory = Callable[[Endpoint, ChannelSettings], grpc.aio.Channel]
"""Builds the channel for an endpoint; replace it to add credentials or interceptors."""


def open_channel(endpoint: Endpoint, settings: ChannelSettings) -> grpc.aio.Channel:
    """The default channel factory: one channel (one connection) per endpoint."""
    if endpoint.factory is not None:
        return endpoint.factory()
    if endpoint.transport == "websocket":
        return WebSocketChannel(
            endpoint.url,
            max_receive_message_bytes=settings.max_receive_message_bytes,
            ping_interval=settings.ws_ping_interval,
            ping_timeout=settings.ws_ping_timeout,
            close_timeout=settings.ws_close_timeout,
            open_timeout=settings.connect_timeout,
        )
    options = settings.grpc_options()
    if endpoint.tls:
        return grpc.aio.secure_channel(
            endpoint.target, grpc.ssl_channel_credentials(), options=options
        )
    return grpc.aio.insecure_channel(endpoint.target, options=options)
