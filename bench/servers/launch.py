"""Starting the servers under test from the parent, each in its own process."""

from __future__ import annotations

import shutil
import socket

from bench.procs import ChildProcess, ProcessFailed, start_child, start_module
from bench.servers import READY_MARKER

SYNCWIRE_READY = "syncwire ready"
# Every bench client connects from 127.0.0.1, so the per-address limit is lifted.
SYNCWIRE_BENCH_FLAGS = (
    "--grpc-port",
    "0",
    "--ws-port",
    "0",
    "--log-level",
    "error",
    "--shutdown-grace",
    "1",
    "--max-connections-per-address",
    "0",
)


async def start_syncwire(name: str, *args: str, max_connections: int = 100_000) -> ChildProcess:
    """The syncwire server (``python -m server`` flags) on uvloop, ports picked freely.
    Endpoints: ``grpc`` (host:port) and ``ws`` (URL)."""
    argv = [*SYNCWIRE_BENCH_FLAGS, "--max-connections", str(max_connections), *args]
    return await start_module(name, "bench.servers.syncwire", argv, marker=SYNCWIRE_READY)


async def start_raw_ws(name: str = "raw-ws", *, compression: bool = True) -> ChildProcess:
    """Endpoint ``ws`` (URL)."""
    flag = "--compression" if compression else "--no-compression"
    return await start_module(name, "bench.servers.raw_ws", [flag], marker=READY_MARKER)


async def start_raw_grpc(name: str = "raw-grpc") -> ChildProcess:
    """Endpoint ``grpc`` (host:port)."""
    return await start_module(name, "bench.servers.raw_grpc", [], marker=READY_MARKER)


async def start_socketio(name: str = "socketio") -> ChildProcess:
    """Endpoint ``url`` (http URL)."""
    return await start_module(name, "bench.servers.socketio_server", [], marker=READY_MARKER)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def start_redis() -> ChildProcess:
    """A private, non-persistent redis-server on a free loopback port. Endpoint ``url``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ProcessFailed("redis-server is not installed")
    last: Exception | None = None
    for _ in range(3):
        port = free_port()
        argv = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]
        try:
            child = await start_child("redis", argv, marker="Ready to accept connections")
        except ProcessFailed as exc:
            last = exc
            continue
        child.endpoints["url"] = f"redis://127.0.0.1:{port}/0"
        return child
    raise ProcessFailed(f"redis-server did not start: {last}")
