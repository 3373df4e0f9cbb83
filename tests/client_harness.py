"""Helpers for the SyncClient tests: a server process that can be SIGKILLed and brought
back on the same ports, and small waits on client events and state."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from client import Backoff, ClientConfig, ConnectionState, StateChange, SyncClient, SyncEvent

from .process_harness import ServerProcess, start_server_process

E = TypeVar("E", bound=SyncEvent)

FAST = ClientConfig(
    backoff=Backoff(base=0.02, cap=0.2),
    connect_timeout=2.0,
    request_timeout=5.0,
    heartbeat_margin=0.5,
)
"""Quick reconnects and a tight liveness bound (2 x the server's interval + 0.5 s)."""


class RestartableServer:
    """`python -m server` in a subprocess; `kill` is SIGKILL (no goodbye to anyone),
    `restart` starts a new process on the same gRPC and WebSocket ports."""

    def __init__(self, *args: str) -> None:
        self._args = args
        self._process: ServerProcess | None = None
        self.grpc_port = 0
        self.ws_port = 0

    @property
    def grpc_endpoint(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def ws_endpoint(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    async def start(self) -> None:
        ports = ("--grpc-port", str(self.grpc_port), "--ws-port", str(self.ws_port))
        self._process = await start_server_process(*self._args, *ports)
        self.grpc_port = int(self._process.grpc_address.rsplit(":", 1)[1])
        self.ws_port = int(self._process.ws_url.rsplit(":", 1)[1])

    async def kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            await process.process.wait()

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            await process.terminate()


@contextlib.asynccontextmanager
async def restartable_server(*args: str) -> AsyncIterator[RestartableServer]:
    """A started RestartableServer (`args`: extra server options), stopped at exit."""
    running = RestartableServer(*args)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def next_event(
    client: SyncClient, kind: type[E], where: Callable[[E], bool] = lambda _: True
) -> E:
    """The next event of `kind` satisfying `where`, skipping others."""
    async for event in client.events():
        if isinstance(event, kind) and where(event):
            return event
    raise AssertionError("the client closed")


async def next_change(client: SyncClient, *states: ConnectionState) -> StateChange:
    """The next state change into one of `states` (start waiting before causing it)."""
    async for change in client.state_changes():
        if change.state in states:
            return change
    raise AssertionError("the client closed")
