"""Binding listening sockets and describing accepted WebSocket connections."""

from __future__ import annotations

import socket
from typing import Any

from websockets.asyncio.server import ServerConnection

from server.ws.context import ConnectionInfo


def _resolve(address: str) -> tuple[socket.AddressFamily, tuple[str, int], bool]:
    """Family, socket address and dual-stack flag of a ``host:port`` to listen on."""
    host, separator, port_text = address.rpartition(":")
    if not separator or not port_text.isdigit():
        raise ValueError(f"address {address!r} is not host:port")
    host, port = host.strip("[]"), int(port_text)
    if host in ("", "::", "0.0.0.0") and socket.has_dualstack_ipv6():
        return socket.AF_INET6, ("::", port), True
    family, _, _, _, sockaddr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return family, (str(sockaddr[0]), int(sockaddr[1])), False


def bind(address: str, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket for ``host:port`` (``[v6]:port`` too; port 0 = ephemeral),
    bound now so the real port is known before the server starts, as with grpc.
    ``reuse_port`` sets SO_REUSEPORT: processes of one user then share the port and the
    kernel spreads new connections among them."""
    family, sockaddr, dualstack = _resolve(address)
    return socket.create_server(
        sockaddr, family=family, dualstack_ipv6=dualstack, reuse_port=reuse_port
    )


def reserve(address: str) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT that does NOT listen: it resolves
    port 0 once and holds the port for processes that then listen on it with
    SO_REUSEPORT (the kernel hands connections to listening sockets only)."""
    family, sockaddr, dualstack = _resolve(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if dualstack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


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
