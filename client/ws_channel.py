"""WebSocketChannel: a grpc.aio.Channel over one multiplexed WebSocket.

``SyncServiceStub(WebSocketChannel("ws://host:port"))`` is typed as the async stub and
behaves like ``SyncServiceStub(grpc.aio.insecure_channel("host:port"))``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Literal

import grpc
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException
from websockets.typing import Subprotocol

from client._ws_channel_base import DEFAULT_MAX_RECEIVE_MESSAGE_BYTES, MultiplexedChannel
from client._ws_interceptors import ClientInterceptor
from wire.protocol import (
    MAX_MESSAGE_BYTES_HEADER,
    PING_INTERVAL_SECONDS,
    PING_TIMEOUT_SECONDS,
    SUBPROTOCOL_PROTOBUF,
)
from wire.transport import MessageTransport
from wire.write_queue import BATCH_BYTES


class WebSocketChannel(MultiplexedChannel):
    """All calls of this channel share one WebSocket, opened on first use and reopened
    by the next call after it drops (calls open at the drop end with UNAVAILABLE).

    Args:
        url: ``ws://host:port/path`` or ``wss://...``.
        ssl_context: TLS settings for wss:// (default: system trust store).
        ca_file: PEM file of CAs to trust for wss:// instead of the system store.
        headers: Extra handshake headers (for example ``authorization``).
        max_receive_message_bytes: Largest response message accepted (grpc default 4 MiB).
        max_send_message_bytes: Largest request sent; the server's announced limit also
            applies, so oversize requests fail with RESOURCE_EXHAUSTED before sending.
        compression: Offer permessage-deflate, which compresses every message of every
            call: True (default), or a `grpc.Compression` as given to
            `grpc.aio.insecure_channel` (Gzip, Deflate, or None: on;
            NoCompression: off), or False (off). A per-call `compression=` is accepted
            and ignored: the WebSocket compression already covers the call.
        ping_interval, ping_timeout: Keepalive, in seconds (default 20 and 20, as the
            server's): a ping every ``ping_interval``; a connection whose answer takes
            longer than ``ping_timeout`` is dropped and its calls end UNAVAILABLE.
            None disables.
        app_ping: Keep alive with call-0 Ping frames (docs/protocol.md, "Keepalive"),
            timed by the server's ConnectionSettings, instead of WebSocket control
            pings: for paths that do not pass control frames, and as browsers do.
        open_timeout: Seconds allowed for the opening handshake.
        close_timeout: Seconds closing the channel (or a dropped connection) waits for
            the server's closing handshake before it aborts the TCP connection: bounds
            how long closing a half-open socket takes (None: wait forever).
        proxy: Proxy to use (True: from the environment; None: none).
        interceptors: `grpc.aio` client interceptors (any of the four
            `*ClientInterceptor` kinds), run exactly as on `grpc.aio.insecure_channel`.

    Per-call `credentials` are applied as call metadata on ``wss://`` and refused with
    grpc.aio.UsageError on ``ws://``, as grpc.aio does on an insecure channel.
    """

    _connect_failures = (OSError, TimeoutError, WebSocketException)

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        max_receive_message_bytes: int | None = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
        max_send_message_bytes: int | None = None,
        compression: bool | grpc.Compression | None = True,
        ping_interval: float | None = PING_INTERVAL_SECONDS,
        ping_timeout: float | None = PING_TIMEOUT_SECONDS,
        open_timeout: float | None = 10.0,
        close_timeout: float | None = 10.0,
        proxy: str | Literal[True] | None = True,
        send_buffer_bytes: int = 256 * 1024,
        interceptors: Sequence[ClientInterceptor] | None = None,
        app_ping: bool = False,
    ) -> None:
        keepalive = (
            (ping_interval, ping_timeout or ping_interval) if app_ping and ping_interval else None
        )
        super().__init__(
            max_receive_message_bytes=max_receive_message_bytes,
            max_send_message_bytes=max_send_message_bytes,
            send_buffer_bytes=send_buffer_bytes,
            keepalive=keepalive,
            interceptors=interceptors,
            secure=url.startswith("wss:"),
        )
        self.url = url
        if ssl_context is None and (ca_file is not None or url.startswith("wss:")):
            # websockets refuses ssl=None for wss://: the system store is the default.
            ssl_context = ssl.create_default_context(cafile=ca_file)
        self._ssl = ssl_context
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        if max_receive_message_bytes is not None:
            pairs.append((MAX_MESSAGE_BYTES_HEADER, str(max_receive_message_bytes)))
        self._headers = pairs
        self._connect_options = {
            "compression": "deflate" if _deflate(compression) else None,
            "ping_interval": None if app_ping else ping_interval,
            "ping_timeout": None if app_ping else ping_timeout,
            "open_timeout": open_timeout,
            "close_timeout": close_timeout,
            "max_size": None
            if max_receive_message_bytes is None
            else max_receive_message_bytes + BATCH_BYTES,
            "proxy": proxy,
        }

    @property
    def authority_url(self) -> str:
        """The server URL this channel connects to."""
        return self.url

    async def _open_transport(self) -> tuple[MessageTransport, int | None]:
        websocket = await connect(
            self.url,
            subprotocols=[Subprotocol(SUBPROTOCOL_PROTOBUF)],
            additional_headers=self._headers,
            ssl=self._ssl if self.url.startswith("wss:") else None,
            **self._connect_options,  # type: ignore[arg-type]
        )
        if websocket.subprotocol != SUBPROTOCOL_PROTOBUF:
            await websocket.close()
            raise ConnectionError(f"{self.url} did not accept subprotocol {SUBPROTOCOL_PROTOBUF}")
        announced = (
            websocket.response.headers.get(MAX_MESSAGE_BYTES_HEADER, "")
            if websocket.response
            else ""
        )
        return websocket, int(announced) if announced.isdigit() else None


def _deflate(compression: bool | grpc.Compression | None) -> bool:
    """Whether a `compression` argument turns permessage-deflate on."""
    if isinstance(compression, bool):
        return compression
    return compression is not grpc.Compression.NoCompression
