"""Says where an asyncio test is stuck: every task's whole await chain, printed from an
event-loop timer.

`Task.print_stack()` shows one frame of a suspended coroutine (the outermost one), and a
dump raised through `asyncio.timeout` never runs when some awaited code swallows the
cancellation. A `loop.call_later` callback runs whenever the loop is idle, whatever the
tasks do, so `dump_tasks_after` still reports a test whose teardown hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any, TextIO


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """`file:line function` for each coroutine `task` is suspended in, outermost first
    (follows cr_await / ag_await / gi_yieldfrom down to the innermost awaitable)."""
    lines: list[str] = []
    awaitable: Any = task.get_coro()
    while awaitable is not None:
        frame: FrameType | None = (
            getattr(awaitable, "cr_frame", None)
            or getattr(awaitable, "ag_frame", None)
            or getattr(awaitable, "gi_frame", None)
        )
        if frame is not None:
            code = frame.f_code
            lines.append(f"{code.co_filename}:{frame.f_lineno} {code.co_name}")
        else:
            lines.append(repr(awaitable)[:200])
        awaitable = (
            getattr(awaitable, "cr_await", None)
            or getattr(awaitable, "ag_await", None)
            or getattr(awaitable, "gi_yieldfrom", None)
        )
    return lines


def print_tasks(what: str, file: TextIO = sys.stdout) -> None:
    """Prints `what`, then every task of the running loop with its await chain."""
    print(f"=== {what}", file=file)
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        print(f"--- {task.get_name()}: {task!r}"[:400], file=file)
        for line in await_chain(task):
            print(f"      {line}", file=file)
    file.flush()


@contextlib.contextmanager
def dump_tasks_after(seconds: float, describe: Any) -> Iterator[None]:
    """Prints every task's await chain (and `describe()`'s value) if the block is still
    running after `seconds`; the block itself is not interrupted."""
    loop = asyncio.get_running_loop()
    handle = loop.call_later(
        seconds, lambda: print_tasks(f"still running after {seconds} s: {describe()}")
    )
    try:
        yield
    finally:
        handle.cancel()
