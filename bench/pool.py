"""The parent's side of the client workers: start them, send commands, read replies."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.procs import ProcessFailed, parse_ready
from bench.progress import ProgressBoard
from bench.worker import READY_MARKER


class WorkerError(RuntimeError):
    """A worker command failed; the message is the worker's description of why."""


class Worker:
    """One ``python -m bench.worker`` process."""

    def __init__(self, index: int, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.index = index
        self.process = process
        self.stderr_path = stderr
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        return self.process.pid

    async def request(self, op: str, *, timeout: float = 600.0, **args: Any) -> dict[str, Any]:
        """Sends one command and returns its result; raises WorkerError on failure."""
        assert self.process.stdin is not None and self.process.stdout is not None
        async with self._lock:
            ident = next(self._ids)
            self.process.stdin.write(orjson.dumps({"op": op, "id": ident, **args}) + b"\n")
            await self.process.stdin.drain()
            try:
                line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            except TimeoutError:
                raise WorkerError(
                    f"worker {self.index}: {op} timed out after {timeout:g} s"
                ) from None
            if not line:
                raise WorkerError(f"worker {self.index} died: {self.stderr_tail()}")
            reply = orjson.loads(line)
            if reply.get("id") != ident:
                raise WorkerError(f"worker {self.index}: reply out of order: {reply!r:.200}")
            if not reply["ok"]:
                raise WorkerError(f"worker {self.index}: {op}: {reply['error']}")
            result: dict[str, Any] = reply["result"]
            return result

    def stderr_tail(self, limit: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_text(errors="replace")[-limit:]
        return ""

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.request("exit"), 10)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        with contextlib.suppress(OSError):
            self.stderr_path.unlink()


async def start_worker(index: int, board: ProgressBoard) -> Worker:
    handle, name = tempfile.mkstemp(prefix=f"bench-worker{index}-", suffix=".log")
    with os.fdopen(handle, "wb") as stderr_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.worker",
            "--board",
            board.path,
            "--slots",
            str(board.slots),
            "--slot",
            str(index),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr_file,
            limit=2**24,
        )
    worker = Worker(index, process, Path(name))
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if parse_ready(line.decode(errors="replace"), READY_MARKER) is None:
        await worker.stop()
        raise ProcessFailed(f"worker {index} did not start: {line!r} {worker.stderr_tail()}")
    return worker


class WorkerPool:
    """Worker 0 publishes; the others hold subscribers (all of them hold idle clients)."""

    def __init__(self, workers: list[Worker], board: ProgressBoard) -> None:
        self.workers = workers
        self.board = board

    @classmethod
    async def start(cls, count: int) -> WorkerPool:
        board = ProgressBoard.create(count)
        started = await asyncio.gather(
            *(start_worker(index, board) for index in range(count)), return_exceptions=True
        )
        workers = [w for w in started if isinstance(w, Worker)]
        failures = [f for f in started if not isinstance(f, Worker)]
        if failures:
            await asyncio.gather(*(w.stop() for w in workers))
            board.remove()
            raise failures[0]
        return cls(workers, board)

    @property
    def publisher(self) -> Worker:
        return self.workers[0]

    @property
    def subscribers(self) -> list[Worker]:
        return self.workers[1:]

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    async def close(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers))
        self.board.remove()


def split(total: int, parts: int) -> list[int]:
    """`total` spread over `parts` as evenly as possible."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
