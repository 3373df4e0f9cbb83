"""Binding listening sockets and describing accepted WebSocket connections."""

from __future__ import annotations

import socket
from typing import Any

from websockets.asyncio.server import ServerConnection

from server.ws.context import ConnectionInfo
from wire.protocol import MAX_MESSAGE_BYTES_HEADER


def bind(address: str) -> socket.socket:
    """A listening TCP socket for ``host:port`` (``[v6]:port`` too; port 0 = ephemeral),
    bound now so the real port is known before the server starts, as with grpc."""
    host, separator, port_text = address.rpartition(":")
    if not separator or not port_text.isdigit():
        raise ValueError(f"address {address!r} is not host:port")
    host, port = host.strip("[]"), int(port_text)
    if host in ("", "::", "0.0.0.0") and socket.has_dualstack_ipv6():
        return socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(sockaddr[:2], family=family)


def format_peer(address: Any) -> str:
    """A socket address as grpc's peer() writes it: ``ipv4:1.2.3.4:5`` or ``ipv6:[::1]:5``."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"ipv6:[{host}]:{port}" if ":" in str(host) else f"ipv4:{host}:{port}"
    return f"unknown:{address}"


def connection_info(connection: ServerConnection) -> ConnectionInfo:
    """Peer, path, handshake headers (lower-case names) and subprotocol of a connection."""
    request = connection.request
    headers = {} if request is None else {k.lower(): v for k, v in request.headers.raw_items()}
    return ConnectionInfo(
        peer=format_peer(connection.remote_address),
        path="/" if request is None else request.path,
        headers=headers,
        subprotocol=connection.subprotocol,
    )


def announced_limit(info: ConnectionInfo) -> int | None:
    """The client's max receive message size from its handshake, if it sent a valid one."""
    value = info.headers.get(MAX_MESSAGE_BYTES_HEADER, "")
    return int(value) if value.isdigit() else None
