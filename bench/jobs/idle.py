"""Idle connections: opened (with retries, as real clients do), held, heartbeaten."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bench.clients import idle_client
from bench.clients.base import IdleClient
from bench.jobs.common import bounded, describe

# A connection storm can overflow a server's accept backlog: fewer opens in flight per
# worker than for subscribers, and a failed open is retried.
OPEN_CONCURRENCY = 32
OPEN_ATTEMPTS = 3
CLOSE_CONCURRENCY = 256


class IdleConnections:
    def __init__(self) -> None:
        self.clients: list[IdleClient] = []

    async def open(
        self, kind: str, endpoint: str, collection: str, count: int, compression: bool
    ) -> dict[str, Any]:
        opened: list[IdleClient] = []
        retried = 0

        def opener() -> Callable[[], Awaitable[None]]:
            async def open_one() -> None:
                nonlocal retried
                for attempt in range(OPEN_ATTEMPTS):
                    client = idle_client(kind, endpoint, compression=compression)
                    try:
                        await asyncio.wait_for(client.open(collection), 60)
                    except Exception:
                        await client.close()
                        if attempt + 1 == OPEN_ATTEMPTS:
                            raise
                        retried += 1
                        await asyncio.sleep(0.5 * (attempt + 1))
                        continue
                    opened.append(client)
                    return

            return open_one

        failures = await bounded([opener() for _ in range(count)], OPEN_CONCURRENCY)
        self.clients.extend(opened)
        return {
            "opened": len(opened),
            "failed": len(failures),
            "retried": retried,
            "first_error": describe(failures[0]) if failures else "",
        }

    async def heartbeat(self) -> dict[str, Any]:
        live = [c.heartbeat for c in self.clients if c.alive]
        failures = await bounded(live, OPEN_CONCURRENCY)
        return {"alive": sum(c.alive for c in self.clients), "heartbeat_failures": len(failures)}

    async def close(self) -> dict[str, Any]:
        alive = sum(c.alive for c in self.clients)
        await bounded([c.close for c in self.clients], CLOSE_CONCURRENCY)
        self.clients = []
        return {"alive": alive}
