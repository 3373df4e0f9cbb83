"""The publisher of a fan-out round: one connection that is also subscribed, so its own
echo proves what the server has taken."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bench.clients import fanout_client
from bench.clients.base import FanoutClient
from bench.jobs.common import describe
from bench.jobs.subscribers import PROGRESS_INTERVAL
from bench.progress import ProgressBoard
from bench.recorder import EchoTracker
from bench.timing import sleep_until

MAX_IN_FLIGHT_PACED = 5000
ECHO_DRAIN_SECONDS = 30.0


class Publisher:
    def __init__(self, board: ProgressBoard) -> None:
        self.board = board
        self.client: FanoutClient | None = None
        self.echo = EchoTracker()

    async def open(
        self, kind: str, endpoint: str, collection: str, compression: bool
    ) -> dict[str, Any]:
        await self.close()
        self.echo = EchoTracker()
        client = fanout_client(kind, endpoint, compression=compression)
        try:
            await asyncio.wait_for(client.open(collection, self.echo), 30)
        except BaseException:
            await client.close()
            raise
        self.client = client
        return {}

    async def publish(
        self, t_start: int, t0: int, t1: int, window: int, rate: float, slots: list[int]
    ) -> dict[str, Any]:
        """Publishes from `t_start` until `t1`. With `rate` 0, as fast as flow control
        allows: at most `window` messages ahead of the slowest subscriber (the minimum
        of the progress `slots`). Otherwise paced at `rate` per second, each payload
        stamped with its scheduled time so a stalled publisher shows up as latency."""
        client = self.client
        assert client is not None
        board = self.board
        seq = in_window = stalls = floor = 0
        cpu_start = time.process_time()
        limit = window if rate <= 0 else MAX_IN_FLIGHT_PACED
        interval = 1e9 / rate if rate > 0 else 0.0
        scheduled = float(t_start)
        await sleep_until(t_start)
        while (now := time.monotonic_ns()) < t1:
            if seq - floor >= limit:
                floor = board.minimum(slots)
                if seq - floor >= limit:
                    stalls += 1
                    await asyncio.sleep(PROGRESS_INTERVAL)
                    continue
            if rate > 0:
                if scheduled > now:
                    await sleep_until(int(scheduled))
                    continue
                stamp = int(scheduled)
                scheduled += interval
            else:
                stamp = now
            seq += 1
            in_window += t0 <= stamp < t1
            await client.publish(seq, stamp)
            if client.failure is not None:
                break
        if client.failure is not None:
            raise RuntimeError(f"publisher failed: {describe(client.failure)}")
        await self._drain(seq)
        return {
            "last_seq": seq,
            "in_window": in_window,
            "stalls": stalls,
            "cpu_seconds": time.process_time() - cpu_start,
        }

    async def _drain(self, seq: int) -> None:
        """Waits for the echo of the last message: closing the stream right away could
        drop writes still in flight, and the echo proves the server has taken them."""
        client, loop = self.client, asyncio.get_running_loop()
        assert client is not None
        deadline = time.monotonic() + ECHO_DRAIN_SECONDS
        while self.echo.last < seq and client.running and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.echo.wait_for(seq, loop), deadline - time.monotonic())

    async def close(self) -> dict[str, Any]:
        if self.client is not None:
            await self.client.close()
            self.client = None
        return {}
