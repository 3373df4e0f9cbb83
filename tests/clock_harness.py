"""A hand-driven clock for token lifetimes: the server's authenticator reads it, the
client's token refresh sleeps on it, and a test moves it forward instead of waiting;
`server_on_clock` starts an authenticating server that judges tokens by it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from server.app import SyncwireServer

from .security_harness import SECRET
from .service_harness import running_server

AUDIENCE = "syncwire-test"


class ManualClock:
    """POSIX seconds that only move when `advance` is called (starts at the real now).

    `time` fits `Authenticator.clock` and `ClientConfig.clock`; `sleep_until` fits the
    client's token refresh, which wakes when a test advances past its moment."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self._moved = asyncio.Event()

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._moved.set()
        self._moved = asyncio.Event()

    async def sleep_until(self, when: float) -> None:
        while self.now < when:
            await self._moved.wait()


@contextlib.asynccontextmanager
async def server_on_clock(clock: ManualClock) -> AsyncIterator[SyncwireServer]:
    """A server with HS256 auth (SECRET, AUDIENCE, no leeway) whose authenticator reads
    `clock`; a short heartbeat interval makes its upkeep check token expiry often."""
    async with running_server(
        auth_secret=SECRET, auth_audience=AUDIENCE, auth_leeway=0.0, heartbeat_interval=0.2
    ) as server:
        assert server.core.authenticator is not None
        server.core.authenticator.clock = clock.time
        yield server
