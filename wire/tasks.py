"""Ending helper tasks without hiding their failures."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

RECANCEL_SECONDS = 1.0
"""How long `cancel_and_wait` gives a cancelled task to end before cancelling it again."""


async def cancel_and_wait(
    task: asyncio.Task[Any],
    log: logging.Logger,
    what: str,
    *,
    recancel_after: float = RECANCEL_SECONDS,
) -> None:
    """Cancels `task` (if still running) and waits until it has ended, cancelling it
    again every `recancel_after` seconds while it runs on. A single cancellation can be
    lost: on Python before 3.12, `asyncio.wait_for` returns the awaited result instead
    of raising CancelledError when the cancellation arrives just as the operation
    completes (CPython gh-86296), and redis-py awaits every socket write through it, so
    a loop task (the upkeep, the Redis reader) would go on forever and its owner's stop
    would never return.

    Its cancellation is expected; any other exception it ended with is a fault, logged
    with its traceback as `what` failing instead of being swallowed. Never raises
    (callers use it in `finally` blocks whose clean-up must go on), also when the
    caller itself is cancelled while it waits."""
    while not task.done():
        task.cancel()
        try:
            await asyncio.wait({task}, timeout=recancel_after)
        except asyncio.CancelledError:
            pass  # the caller's clean-up goes on: this task must still end
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("%s failed", what, exc_info=error)
