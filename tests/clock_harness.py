"""A hand-driven clock for token lifetimes: the server's authenticator reads it, the
client's token refresh sleeps on it, and a test moves it forward instead of waiting."""

from __future__ import annotations

import asyncio
import time


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
