"""Starting the servers under test from the parent, each in its own process."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from pathlib import Path

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


async def start_redis(name: str = "redis", *, cluster: bool = False) -> ChildProcess:
    """A private, non-persistent redis-server on a free loopback port. Endpoint ``url``
    (and ``port``). `cluster`: cluster-enabled, with an explicit bus port (the default,
    port + 10000, overflows for ephemeral ports), to be joined by `form_cluster`."""
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
        scratch = Path(tempfile.mkdtemp(prefix="bench-redis-")) if cluster else None
        if scratch is not None:
            argv += ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
            argv += ["--cluster-config-file", "nodes.conf", "--dir", str(scratch)]
        try:
            child = await start_child(name, argv, marker="Ready to accept connections")
        except ProcessFailed as exc:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            last = exc
            continue
        child.scratch = scratch
        child.endpoints["url"] = f"redis://127.0.0.1:{port}/0"
        child.endpoints["port"] = str(port)
        return child
    raise ProcessFailed(f"redis-server did not start: {last}")


async def form_cluster(ports: list[int], timeout: float = 60.0) -> str:
    """Joins cluster-enabled redis-servers into one Redis Cluster of masters that share
    the 16384 slots evenly (no replicas: the bench measures, it does not fail over);
    returns its ``redis+cluster://`` URL once every node reports the cluster ok."""
    from redis.asyncio import Redis

    clients = [Redis(port=port) for port in ports]
    try:
        for port, other in zip(ports[1:], clients[1:], strict=True):
            settings = await other.config_get("cluster-port")
            bus = next(iter(settings.values()))
            await clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port, bus)  # type: ignore[no-untyped-call]
        share = 16384 // len(clients)
        for index, client in enumerate(clients):
            end = 16383 if index == len(clients) - 1 else (index + 1) * share - 1
            await client.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, end)  # type: ignore[no-untyped-call]
        async with asyncio.timeout(timeout):
            while True:  # another process's state: nothing to wait on but a poll
                infos = [await c.execute_command("CLUSTER", "INFO") for c in clients]  # type: ignore[no-untyped-call]
                if all(b"cluster_state:ok" in info for info in infos):
                    break
                await asyncio.sleep(0.1)
    finally:
        for client in clients:
            await client.aclose()
    return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
