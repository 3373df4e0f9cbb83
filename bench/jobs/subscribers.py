"""The subscriber side of a fan-out round: many connections in one collection, each
counting what it receives, and this worker's progress posted for the publisher."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.clients import fanout_client
from bench.clients.base import FanoutClient
from bench.jobs.common import bounded, describe
from bench.progress import ProgressBoard
from bench.recorder import NEVER, Tracker, Window, summarize

OPEN_CONCURRENCY = 64
PROGRESS_INTERVAL = 0.001


async def probe(kind: str, endpoint: str, collection: str, compression: bool) -> dict[str, Any]:
    """Opens and closes one subscriber: raises when the transport is unavailable."""
    client = fanout_client(kind, endpoint, compression=compression)
    try:
        await asyncio.wait_for(client.open(collection, lambda seq, sent: None), 15)
    finally:
        await client.close()
    return {}


class Subscribers:
    def __init__(self, board: ProgressBoard, slot: int) -> None:
        self.board = board
        self.slot = slot
        self.window = Window()
        self.clients: list[tuple[FanoutClient, Tracker]] = []
        self._progress: asyncio.Task[None] | None = None
        self._cpu_mark = time.process_time()

    async def subscribe(
        self, kind: str, endpoint: str, collection: str, count: int, compression: bool
    ) -> dict[str, Any]:
        """Opens `count` subscribers; all or nothing."""
        await self.close()
        self.window = Window()
        opened: list[tuple[FanoutClient, Tracker]] = []

        def opener() -> Callable[[], Awaitable[None]]:
            async def open_one() -> None:
                client = fanout_client(kind, endpoint, compression=compression)
                tracker = Tracker(self.window)
                try:
                    await asyncio.wait_for(client.open(collection, tracker), 30)
                except BaseException:
                    await client.close()
                    raise
                opened.append((client, tracker))

            return open_one

        failures = await bounded([opener() for _ in range(count)], OPEN_CONCURRENCY)
        self.clients = opened
        if failures:
            await self.close()
            raise RuntimeError(
                f"{len(failures)} of {count} subscribers failed: {describe(failures[0])}"
            )
        return {"opened": len(opened)}

    async def arm(self, t0: int, t1: int) -> dict[str, Any]:
        """Sets the measured window and starts posting progress."""
        self.window.t0, self.window.t1 = t0, t1
        self._cpu_mark = time.process_time()
        self.board.post(self.slot, 0)
        self._stop_progress()
        self._progress = asyncio.create_task(self._post_progress())
        return {}

    async def _post_progress(self) -> None:
        """Posts the lowest sequence every live subscriber here has received."""
        board, slot, clients = self.board, self.slot, self.clients
        while True:
            live = [t.last for c, t in clients if c.running]
            board.post(slot, min(live) if live else NEVER)
            await asyncio.sleep(PROGRESS_INTERVAL)

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.cancel()
            self._progress = None

    async def collect(self, last_seq: int, drain_seconds: float) -> dict[str, Any]:
        """Waits until every subscriber saw `last_seq` (or failed, or `drain_seconds`
        passed), then reports and closes the subscribers."""
        cpu = time.process_time() - self._cpu_mark
        self._stop_progress()
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline:
            if all(t.last >= last_seq or not c.running for c, t in self.clients):
                break
            await asyncio.sleep(0.01)
        failures = [describe(c.failure) for c, _ in self.clients if c.failure is not None]
        result = summarize([t for _, t in self.clients], last_seq)
        result.update(
            latency=self.window.latency.to_json(),
            cpu_seconds=cpu,
            failures=failures[:5],
            failed=len(failures),
        )
        await self.close()
        return result

    async def close(self) -> dict[str, Any]:
        self._stop_progress()
        await asyncio.gather(*(c.close() for c, _ in self.clients), return_exceptions=True)
        self.clients = []
        return {}
