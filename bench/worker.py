"""A client worker process: ``python -m bench.worker``.

The parent drives it with one JSON command per stdin line and reads one JSON reply per
line from the worker's protocol stream (the original stdout; the process's fd 1 is
pointed at stderr so nothing else can corrupt it). A worker holds many client
connections of one kind at a time: subscribers, a publisher, RPC callers or idle
connections. See `Jobs.commands` for the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

import orjson

from bench.jobs import catchup
from bench.jobs.common import describe
from bench.jobs.idle import IdleConnections
from bench.jobs.publisher import Publisher
from bench.jobs.rpc import run_rpc
from bench.jobs.subscribers import Subscribers, probe
from bench.loop import raise_nofile_limit, run
from bench.progress import ProgressBoard

READY_MARKER = "bench-worker ready"

Command = Callable[..., Awaitable[dict[str, Any]]]


class Jobs:
    """What one worker holds between commands, and the command table."""

    def __init__(self, board: ProgressBoard, slot: int) -> None:
        self.subscribers = Subscribers(board, slot)
        self.publisher = Publisher(board)
        self.idle = IdleConnections()

    def commands(self) -> dict[str, Command]:
        return {
            "probe": probe,
            "subscribe": self.subscribers.subscribe,
            "arm": self.subscribers.arm,
            "collect": self.subscribers.collect,
            "publisher_open": self.publisher.open,
            "publish": self.publisher.publish,
            "publisher_close": self.publisher.close,
            "rpc": run_rpc,
            "idle_open": self.idle.open,
            "idle_heartbeat": self.idle.heartbeat,
            "idle_close": self.idle.close,
            "translate": translate,
            "catchup_seed": catchup.seed,
            "catchup_recover": catchup.recover,
        }

    async def close(self) -> None:
        await self.idle.close()
        await self.subscribers.close()
        await self.publisher.close()


async def translate(case: str, seconds: float) -> dict[str, Any]:
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
    jobs = Jobs(board, slot)
    commands = jobs.commands()
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
            if op not in commands:
                raise ValueError(f"unknown command {op!r}")
            result = await commands[op](**command)
            protocol.reply({"id": ident, "ok": True, "result": result})
        except (Exception, asyncio.CancelledError) as exc:
            traceback.print_exc()
            protocol.reply({"id": ident, "ok": False, "error": describe(exc)})
    await jobs.close()


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
