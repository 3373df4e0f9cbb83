"""A `SyncClient` run the way a command needs it: fail fast, never hang.

An application's client retries forever in the background; a command must instead
report a server it cannot reach at once (the first failed attempt, not the fifth), and
stop waiting when the client gives up. `CommandSession` wraps each awaited operation so
that whichever comes first, the result or the client's failure, ends the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from client.errors import SyncError
from client.state import ConnectionState, StateChange
from client.sync_client import SyncClient

from .errors import CliError, from_sync_error
from .output import notice
from .target import Target

T = TypeVar("T")


class CommandSession:
    """One client for one command. `run(op)` awaits `op`, or raises the connection
    failure that makes it pointless (first connection failed, or the client went
    OFFLINE after exhausting its reconnect attempts)."""

    def __init__(self, client: SyncClient, target: Target, *, announce: bool) -> None:
        self.client = client
        self.target = target
        self._announce = announce
        self._connected_once = False
        self._failed: asyncio.Future[SyncError] = asyncio.get_running_loop().create_future()
        client.on_state_change(self._on_change)

    def _on_change(self, change: StateChange) -> None:
        if change.state is ConnectionState.CONNECTED:
            if self._connected_once and self._announce:
                notice(f"reconnected to {change.endpoint}", "green")
            self._connected_once = True
            return
        error = change.error
        if error is None or self._failed.done():
            return
        if change.state is ConnectionState.OFFLINE or not self._connected_once:
            self._failed.set_result(error)
        elif self._announce and change.state is ConnectionState.RECONNECTING:
            delay = f" in {change.delay:.1f} s" if change.delay is not None else ""
            reason = self.explain(error, "session").message
            notice(f"{reason}; reconnecting{delay}", "yellow")

    async def run(self, operation: Awaitable[T], what: str) -> T:
        """`operation`'s result; a CliError naming `what` if it or the connection fails."""
        task = asyncio.ensure_future(operation)
        waiters: set[asyncio.Future[Any]] = {task, self._failed}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, SyncError):
                    await task
        if task.done() and not task.cancelled():
            try:
                return task.result()
            except SyncError as error:
                raise self.explain(error, what) from None
        raise self.explain(self._failed.result(), what)

    def explain(self, error: SyncError, what: str) -> CliError:
        """The one-line CliError for `error` while doing `what` against this target."""
        return from_sync_error(error, where=self.target.where, what=what)


@contextlib.asynccontextmanager
async def open_session(
    target: Target, *, reconnect_attempts: int | None = 8, announce: bool = True
) -> AsyncIterator[CommandSession]:
    """A connected session (the connection is up when this yields)."""
    client = SyncClient(
        target.endpoint, target.client_config(reconnect_attempts=reconnect_attempts)
    )
    session = CommandSession(client, target, announce=announce)
    try:
        await session.run(client.connect(), "session")
        yield session
    finally:
        await client.close()
