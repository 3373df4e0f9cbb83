"""Channels that trust a private certificate authority (grpcs:// and wss:// endpoints).

The default channel factory trusts the system's CA store. A server whose certificate is
signed by a private CA needs that CA, on both transports:

    config = ClientConfig(channel_factory=tls_channel_factory("ca.pem"))
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import grpc
import grpc.aio

from .endpoints import ChannelFactory, ChannelSettings, Endpoint, open_channel
from .ws_channel import WebSocketChannel


def tls_channel_factory(ca_file: str | os.PathLike[str]) -> ChannelFactory:
    """A channel factory whose TLS endpoints trust the CAs in `ca_file` (PEM) instead
    of the system store; plain and custom endpoints are opened as by `open_channel`."""
    ca_pem = Path(ca_file).read_bytes()
    ssl_context = ssl.create_default_context(cafile=os.fspath(ca_file))

    def open_trusting_ca(endpoint: Endpoint, settings: ChannelSettings) -> grpc.aio.Channel:
        if not endpoint.tls or endpoint.factory is not None:
            return open_channel(endpoint, settings)
        if endpoint.transport == "websocket":
            return WebSocketChannel(
                endpoint.url,
                ssl_context=ssl_context,
                max_receive_message_bytes=settings.max_receive_message_bytes,
                ping_interval=settings.ws_ping_interval,
                ping_timeout=settings.ws_ping_timeout,
                close_timeout=settings.ws_close_timeout,
                open_timeout=settings.connect_timeout,
            )
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
        return grpc.aio.secure_channel(
            endpoint.target, credentials, options=settings.grpc_options()
        )

    return open_trusting_ca
