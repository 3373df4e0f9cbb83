"""A client worker process: ``python -m bench.worker``.

The parent drives it with one JSON command per stdin line and reads one JSON reply per
line from the worker's protocol stream (the original stdout; the process's fd 1 is
pointed at stderr so nothing else can corrupt it). A worker holds many client
connections of one kind at a time: subscribers, a publisher, RPC callers or idle
connections. See `WorkerState` for the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

import grpc.aio
import orjson

from bench.clients import fanout_client, idle_client, rpc_target
from bench.clients.base import FanoutClient, IdleClient, RpcTarget
from bench.histogram import Histogram
from bench.loop import raise_nofile_limit, run
from bench.progress import ProgressBoard
from bench.recorder import NEVER, EchoTracker, Tracker, Window, summarize
from bench.timing import sleep_until

READY_MARKER = "bench-worker ready"
OPEN_CONCURRENCY = 64
# Like real clients, idle connections retry a failed open (a connection storm can
# overflow a server's accept backlog), with fewer opens in flight per worker.
IDLE_OPEN_CONCURRENCY = 32
IDLE_OPEN_ATTEMPTS = 3
MAX_IN_FLIGHT_PACED = 5000
PROGRESS_INTERVAL = 0.001
ECHO_DRAIN_SECONDS = 30.0
COMMANDS = frozenset(
    {
        "probe",
        "subscribe",
        "arm",
        "collect",
        "publisher_open",
        "publish",
        "publisher_close",
        "rpc",
        "idle_open",
        "idle_heartbeat",
        "idle_close",
        "translate",
    }
)


async def _bounded(tasks: list[Callable[[], Awaitable[None]]], limit: int) -> list[BaseException]:
    """Runs `tasks` at most `limit` at a time; returns their failures."""
    semaphore = asyncio.Semaphore(limit)
    failures: list[BaseException] = []

    async def one(task: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            try:
                await task()
            except Exception as exc:
                failures.append(exc)

    await asyncio.gather(*(one(task) for task in tasks))
    return failures


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"gRPC {exc.code().name}: {exc.details()}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


class WorkerState:
    """What one worker holds between commands, and the commands themselves."""

    def __init__(self, board: ProgressBoard, slot: int) -> None:
        self.board = board
        self.slot = slot
        self._progress: asyncio.Task[None] | None = None
        self.window = Window()
        self.subscribers: list[tuple[FanoutClient, Tracker]] = []
        self.publisher: FanoutClient | None = None
        self.echo = EchoTracker()
        self.idle: list[IdleClient] = []
        self.cpu_mark = time.process_time()

    # ----------------------------------------------------------------- fan-out

    async def probe(
        self, kind: str, endpoint: str, collection: str, compression: bool
    ) -> dict[str, Any]:
        """Opens and closes one subscriber: raises when the transport is unavailable."""
        client = fanout_client(kind, endpoint, compression=compression)
        try:
            await asyncio.wait_for(client.open(collection, lambda seq, sent: None), 15)
        finally:
            await client.close()
        return {}

    async def subscribe(
        self, kind: str, endpoint: str, collection: str, count: int, compression: bool
    ) -> dict[str, Any]:
        await self.close_subscribers()
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

        failures = await _bounded([opener() for _ in range(count)], OPEN_CONCURRENCY)
        self.subscribers = opened
        if failures:
            await self.close_subscribers()
            raise RuntimeError(
                f"{len(failures)} of {count} subscribers failed: {_describe(failures[0])}"
            )
        return {"opened": len(opened)}

    async def arm(self, t0: int, t1: int) -> dict[str, Any]:
        self.window.t0, self.window.t1 = t0, t1
        self.cpu_mark = time.process_time()
        self.board.post(self.slot, 0)
        self._stop_progress()
        self._progress = asyncio.create_task(self._post_progress())
        return {}

    async def _post_progress(self) -> None:
        """Posts the lowest sequence every live subscriber here has received."""
        board, slot, subscribers = self.board, self.slot, self.subscribers
        while True:
            live = [t.last for c, t in subscribers if c.running]
            board.post(slot, min(live) if live else NEVER)
            await asyncio.sleep(PROGRESS_INTERVAL)

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.cancel()
            self._progress = None

    async def collect(self, last_seq: int, drain_seconds: float) -> dict[str, Any]:
        """Waits until every subscriber saw `last_seq` (or failed, or `drain_seconds`
        passed), then reports and closes the subscribers."""
        cpu = time.process_time() - self.cpu_mark
        self._stop_progress()
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline:
            if all(t.last >= last_seq or not c.running for c, t in self.subscribers):
                break
            await asyncio.sleep(0.01)
        trackers = [t for _, t in self.subscribers]
        failures = [_describe(c.failure) for c, _ in self.subscribers if c.failure is not None]
        result = summarize(trackers, last_seq)
        result.update(
            latency=self.window.latency.to_json(),
            cpu_seconds=cpu,
            failures=failures[:5],
            failed=len(failures),
        )
        await self.close_subscribers()
        return result

    async def close_subscribers(self) -> None:
        await asyncio.gather(*(c.close() for c, _ in self.subscribers), return_exceptions=True)
        self.subscribers = []

    async def publisher_open(
        self, kind: str, endpoint: str, collection: str, compression: bool
    ) -> dict[str, Any]:
        self.echo = EchoTracker()
        client = fanout_client(kind, endpoint, compression=compression)
        try:
            await asyncio.wait_for(client.open(collection, self.echo), 30)
        except BaseException:
            await client.close()
            raise
        self.publisher = client
        return {}

    async def publish(
        self, t_start: int, t0: int, t1: int, window: int, rate: float, slots: list[int]
    ) -> dict[str, Any]:
        """Publishes from `t_start` until `t1`. With `rate` 0, as fast as flow control
        allows: at most `window` messages ahead of the slowest subscriber (the minimum
        of the progress `slots`). Otherwise paced at `rate` per second, each payload
        stamped with its scheduled time so a stalled publisher shows up as latency."""
        client = self.publisher
        assert client is not None
        echo, loop, board = self.echo, asyncio.get_running_loop(), self.board
        seq = in_window = stalls = 0
        cpu_start = time.process_time()
        limit = window if rate <= 0 else MAX_IN_FLIGHT_PACED
        floor = 0
        await sleep_until(t_start)
        interval = 1e9 / rate if rate > 0 else 0.0
        scheduled = float(t_start)
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
            raise RuntimeError(f"publisher failed: {_describe(client.failure)}")
        # Closing the stream right away could drop writes still in flight; the echo of
        # the last message proves the server has taken every one.
        drained = time.monotonic_ns() + int(ECHO_DRAIN_SECONDS * 1e9)
        while echo.last < seq and client.running and time.monotonic_ns() < drained:
            await self._wait_echo(seq, drained, loop)
        return {
            "last_seq": seq,
            "in_window": in_window,
            "stalls": stalls,
            "cpu_seconds": time.process_time() - cpu_start,
        }

    async def _wait_echo(self, seq: int, t1: int, loop: asyncio.AbstractEventLoop) -> None:
        remaining = (t1 - time.monotonic_ns()) / 1e9
        if self.publisher is not None and not self.publisher.running:
            raise RuntimeError(f"publisher stream ended: {self.publisher.failure}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.echo.wait_for(seq, loop), max(remaining, 0.001))

    async def publisher_close(self) -> dict[str, Any]:
        if self.publisher is not None:
            await self.publisher.close()
            self.publisher = None
        return {}

    # --------------------------------------------------------------------- rpc

    async def rpc(
        self,
        kind: str,
        endpoint: str,
        collection: str,
        concurrency: int,
        t_start: int,
        t0: int,
        t1: int,
        compression: bool,
    ) -> dict[str, Any]:
        """`concurrency` callers in a loop until `t1`; counts calls completed in the
        window and their latency."""
        target: RpcTarget = rpc_target(kind, endpoint, compression=compression)
        latency = Histogram()
        done_in_window = 0
        errors: list[str] = []

        async def loop_calls(call: Callable[[], Awaitable[None]]) -> None:
            nonlocal done_in_window
            while (start := time.monotonic_ns()) < t1:
                try:
                    await call()
                except Exception as exc:
                    errors.append(_describe(exc))
                    if len(errors) > 100:
                        return
                    continue
                end = time.monotonic_ns()
                if t0 <= start and end < t1:
                    done_in_window += 1
                    latency.add((end - start) // 1000)

        try:
            callers = await asyncio.wait_for(target.open(collection, concurrency), 30)
            await callers[0]()  # connect and warm up before the clock starts
            await sleep_until(t_start)
            cpu_start = time.process_time()
            await asyncio.gather(*(loop_calls(call) for call in callers))
            cpu = time.process_time() - cpu_start
        finally:
            await target.close()
        return {
            "calls": done_in_window,
            "latency": latency.to_json(),
            "errors": len(errors),
            "first_error": errors[0] if errors else "",
            "cpu_seconds": cpu,
        }

    # -------------------------------------------------------------------- idle

    async def idle_open(
        self, kind: str, endpoint: str, collection: str, count: int, compression: bool
    ) -> dict[str, Any]:
        opened: list[IdleClient] = []

        retried = 0

        def opener() -> Callable[[], Awaitable[None]]:
            async def open_one() -> None:
                nonlocal retried
                for attempt in range(IDLE_OPEN_ATTEMPTS):
                    client = idle_client(kind, endpoint, compression=compression)
                    try:
                        await asyncio.wait_for(client.open(collection), 60)
                    except Exception:
                        await client.close()
                        if attempt + 1 == IDLE_OPEN_ATTEMPTS:
                            raise
                        retried += 1
                        await asyncio.sleep(0.5 * (attempt + 1))
                        continue
                    opened.append(client)
                    return

            return open_one

        failures = await _bounded([opener() for _ in range(count)], IDLE_OPEN_CONCURRENCY)
        self.idle.extend(opened)
        return {
            "opened": len(opened),
            "failed": len(failures),
            "retried": retried,
            "first_error": _describe(failures[0]) if failures else "",
        }

    async def idle_heartbeat(self) -> dict[str, Any]:
        failures = await _bounded([c.heartbeat for c in self.idle if c.alive], OPEN_CONCURRENCY)
        return {"alive": sum(c.alive for c in self.idle), "heartbeat_failures": len(failures)}

    async def idle_close(self) -> dict[str, Any]:
        alive = sum(c.alive for c in self.idle)
        await _bounded([c.close for c in self.idle], 256)
        self.idle = []
        return {"alive": alive}

    # --------------------------------------------------------------- translate

    async def translate(self, case: str, seconds: float) -> dict[str, Any]:
        from bench.translate_cases import run_case

        return run_case(case, seconds)


class _Protocol:
    """Reads commands from stdin, writes replies to the saved stdout."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def reply(self, message: dict[str, Any]) -> None:
        self.out.write(orjson.dumps(message) + b"\n")
        self.out.flush()


async def serve(out: BinaryIO, board: ProgressBoard, slot: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    protocol = _Protocol(out)
    state = WorkerState(board, slot)
    out.write(f"{READY_MARKER} pid={os.getpid()}\n".encode())
    out.flush()
    while line := await reader.readline():
        command = orjson.loads(line)
        op = command.pop("op")
        ident = command.pop("id")
        if op == "exit":
            protocol.reply({"id": ident, "ok": True, "result": {}})
            break
        try:
            if op not in COMMANDS:
                raise ValueError(f"unknown command {op!r}")
            handler = getattr(state, op)
            result = await handler(**command)
            protocol.reply({"id": ident, "ok": True, "result": result})
        except (Exception, asyncio.CancelledError) as exc:
            traceback.print_exc()
            protocol.reply({"id": ident, "ok": False, "error": _describe(exc)})
    await state.idle_close()
    await state.close_subscribers()
    await state.publisher_close()


def main() -> None:
    parser = argparse.ArgumentParser(description="bench client worker (driven by the bench)")
    parser.add_argument("--board", required=True, help="progress board file")
    parser.add_argument("--slots", type=int, required=True)
    parser.add_argument("--slot", type=int, required=True)
    args = parser.parse_args()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    raise_nofile_limit()
    board = ProgressBoard(args.board, args.slots)
    try:
        run(serve(out, board, args.slot))
    finally:
        board.close()


if __name__ == "__main__":
    main()
