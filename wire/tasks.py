"""Ending helper tasks without hiding their failures."""

from __future__ import annotations

import asyncio
import logging
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any], log: logging.Logger, what: str) -> None:
    """Cancels `task` (if still running) and waits for it. Its cancellation is expected;
    any other exception it ended with is a fault, logged with its traceback as `what`
    failing instead of being swallowed. Never raises (callers use it in `finally` blocks
    whose clean-up must go on)."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("%s failed", what)
