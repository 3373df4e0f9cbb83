"""Helpers the worker jobs share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import grpc.aio


async def bounded(
    tasks: Sequence[Callable[[], Awaitable[object]]], limit: int
) -> list[BaseException]:
    """Runs `tasks` at most `limit` at a time; returns their failures."""
    semaphore = asyncio.Semaphore(limit)
    failures: list[BaseException] = []

    async def one(task: Callable[[], Awaitable[object]]) -> None:
        async with semaphore:
            try:
                await task()
            except Exception as exc:
                failures.append(exc)

    await asyncio.gather(*(one(task) for task in tasks))
    return failures


def describe(exc: BaseException) -> str:
    """One short line for a failure, as the parent will show it."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"gRPC {exc.code().name}: {exc.details()}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]
