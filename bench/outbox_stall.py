"""``python -m bench.outbox_stall``: how long the client's persisted outbox blocks the
event loop during a burst of publishes.

`SqliteOutboxStore` writes on the event loop thread: an INSERT per publish, a DELETE
per acknowledgement. This measures, for a burst of N publishes (default 10,000) to an
outbox file:

- **offline**: the client has no server (the publishes wait in the outbox);
- **flushing**: a server comes up and the client sends the outbox and removes what is
  acknowledged.

Two numbers per phase: the longest single SQLite write (the store's own time, what
blocks the loop per call) and the worst event-loop lag seen by a 1 ms ticker task (all
the loop's work, the writes included). The application yields to the loop after every
publish, as an application awaiting anything does. Results go to stdout as JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from client import ClientConfig, SyncClient
from client.outbox import SqliteOutboxStore
from server.app import SyncwireServer
from server.config import ServerConfig


class _WriteTimer:
    """Times every call of the store's `add` and `remove` (the SQLite writes)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.total = 0.0
        self.count = 0

    def wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args)
            finally:
                spent = time.perf_counter() - started
                self.longest = max(self.longest, spent)
                self.total += spent
                self.count += 1

        return timed


@contextmanager
def _timed_writes() -> Iterator[_WriteTimer]:
    timer = _WriteTimer()
    add, remove = SqliteOutboxStore.add, SqliteOutboxStore.remove
    SqliteOutboxStore.add = timer.wrap(add)  # type: ignore[method-assign]
    SqliteOutboxStore.remove = timer.wrap(remove)  # type: ignore[method-assign]
    try:
        yield timer
    finally:
        SqliteOutboxStore.add = add  # type: ignore[method-assign]
        SqliteOutboxStore.remove = remove  # type: ignore[method-assign]


class _LagMeter:
    """A task sleeping 1 ms at a time; the worst lateness is the loop's worst stall."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.001
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, loop.time() - due)

    def __enter__(self) -> _LagMeter:
        self._task = asyncio.create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _record(phase: str, count: int, timer: _WriteTimer, lag: _LagMeter) -> dict[str, Any]:
    return {
        "phase": phase,
        "publishes": count,
        "sqlite_writes": timer.count,
        "longest_write_ms": round(timer.longest * 1000, 3),
        "mean_write_ms": round(timer.total / max(timer.count, 1) * 1000, 4),
        "worst_loop_lag_ms": round(lag.worst * 1000, 3),
    }


async def measure(count: int, outbox: Path) -> list[dict[str, Any]]:
    """Runs both phases against a fresh outbox file; returns one record per phase."""
    port = _free_port()
    config = ClientConfig(outbox_path=outbox, outbox_limit=count, first_connect_timeout=None)
    results = []
    async with SyncClient(f"grpc://127.0.0.1:{port}", config) as client:
        with _timed_writes() as timer, _LagMeter() as lag:
            for n in range(count):
                client.submit("stall", f"{n}".encode())
                await asyncio.sleep(0)
        results.append(_record("offline", count, timer, lag))

        server = SyncwireServer(
            ServerConfig(host="127.0.0.1", grpc_port=port, ws_port=0, history_size=count)
        )
        await server.start()
        try:
            with _timed_writes() as timer, _LagMeter() as lag:
                await client.connect(timeout=None)
                await client.flush()
            results.append(_record("flushing", count, timer, lag))
        finally:
            await server.stop(grace=1.0)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox_stall", description=__doc__)
    parser.add_argument("--count", type=int, default=10_000, help="publishes in the burst")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for record in asyncio.run(measure(args.count, Path(directory) / "outbox.sqlite")):
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
