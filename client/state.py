"""The client's connection state and the ways to observe it.

Applications read `SyncClient.state`, iterate `SyncClient.state_changes()`, or register a
callback; each observer sees every change after it started observing, in order.

An iterator keeps at most `STATE_CHANGES_LIMIT` changes it has not yet yielded. One that
falls further behind (never iterated, or iterated far too slowly) stops receiving
changes: it yields what it kept, then raises `StateChangesOverflow`. An iterator the
application drops without finishing is forgotten (nothing keeps queueing for it).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from .errors import SyncError

log = logging.getLogger(__name__)


class ConnectionState(enum.Enum):
    """Where the client's connection stands.

    CONNECTING: first connection attempt(s), never connected yet.
    CONNECTED: a stream is open and every subscription has been (re)established, or
        its rejoin was refused for now and is sent again after the server's retry_after.
    RECONNECTING: the connection was lost; the client retries with backoff.
    OFFLINE: the client is not trying: not started yet, or it stopped retrying
        (attempts exhausted, or the server refused for good); publishes still queue.
        `SyncClient.reconnect()` starts again.
    CLOSED: `close()` was called; terminal.
    """

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class StateChange:
    """One transition, with where it happened and why.

    Attributes:
        state: The new state.
        previous: The state before.
        endpoint: URL of the endpoint in use (CONNECTED) or that failed last.
        transport: "grpc", "websocket" or "inprocess", when an endpoint is known.
        error: What ended the connection or failed the attempt, if anything.
        delay: For RECONNECTING/CONNECTING after a failure: seconds until the next attempt.
    """

    state: ConnectionState
    previous: ConnectionState
    endpoint: str | None = None
    transport: str | None = None
    error: SyncError | None = None
    delay: float | None = None


StateListener = Callable[[StateChange], None]

STATE_CHANGES_LIMIT = 256
"""Changes a `state_changes()` iterator keeps unread before it overflows."""


class StateChangesOverflow(SyncError):
    """A `state_changes()` iterator fell more than `STATE_CHANGES_LIMIT` changes behind;
    later changes were not kept for it. Read `SyncClient.state` and start a new one."""

    def __init__(self) -> None:
        super().__init__(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"state_changes() fell more than {STATE_CHANGES_LIMIT} changes behind; later "
            "changes were dropped (read client.state and call state_changes() again)",
            reason_code="state_changes_overflow",
        )


class _Observer:
    """One iterator's unread changes (weakly referenced by the tracker)."""

    __slots__ = ("__weakref__", "changes", "overflowed", "wakeup")

    def __init__(self) -> None:
        self.changes: deque[StateChange] = deque()
        self.overflowed = False
        self.wakeup = asyncio.Event()

    def push(self, change: StateChange) -> None:
        if self.overflowed:
            return
        if len(self.changes) >= STATE_CHANGES_LIMIT:
            self.overflowed = True
        else:
            self.changes.append(change)
        self.wakeup.set()


class StateTracker:
    """Holds the current state and fans changes out to iterators and callbacks."""

    def __init__(self, initial: ConnectionState = ConnectionState.OFFLINE) -> None:
        self._state = initial
        self._last: StateChange | None = None
        self._listeners: list[StateListener] = []
        self._observers: weakref.WeakSet[_Observer] = weakref.WeakSet()
        self._changed = asyncio.Event()

    @property
    def state(self) -> ConnectionState:
        """The current connection state."""
        return self._state

    @property
    def last_change(self) -> StateChange | None:
        """The latest StateChange (None before the first)."""
        return self._last

    def set(
        self,
        state: ConnectionState,
        *,
        endpoint: str | None = None,
        transport: str | None = None,
        error: SyncError | None = None,
        delay: float | None = None,
    ) -> None:
        """Records a transition. Repeating the same state is reported only when it
        says something new (a retry delay, a different endpoint)."""
        if self._state is ConnectionState.CLOSED:
            return
        last = self._last
        if (
            last is not None
            and state is self._state
            and (endpoint, transport, error, delay)
            == (last.endpoint, last.transport, last.error, last.delay)
        ):
            return
        change = StateChange(state, self._state, endpoint, transport, error, delay)
        self._state = state
        self._last = change
        for observer in list(self._observers):
            observer.push(change)
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("state listener failed")
        self._changed.set()
        self._changed = asyncio.Event()

    def add_listener(self, listener: StateListener) -> Callable[[], None]:
        """Calls `listener` on every change; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def changes(self) -> AsyncIterator[StateChange]:
        """Every change from the moment of this call on; ends after CLOSED. Raises
        `StateChangesOverflow` after falling `STATE_CHANGES_LIMIT` changes behind."""
        observer = _Observer()
        if self._state is ConnectionState.CLOSED:
            return self._closed()
        self._observers.add(observer)
        return self._drain(observer)

    @staticmethod
    async def _closed() -> AsyncIterator[StateChange]:
        return
        yield  # an async generator that ends at once

    async def _drain(self, observer: _Observer) -> AsyncIterator[StateChange]:
        try:
            while True:
                while not observer.changes:
                    if observer.overflowed:
                        raise StateChangesOverflow()
                    observer.wakeup.clear()
                    await observer.wakeup.wait()
                change = observer.changes.popleft()
                yield change
                if change.state is ConnectionState.CLOSED:
                    return
        finally:
            self._observers.discard(observer)

    async def wait_for(self, *states: ConnectionState) -> ConnectionState:
        """Returns as soon as the state is one of `states` (at once if it already is)."""
        while self._state not in states:
            if self._state is ConnectionState.CLOSED:
                return self._state
            await self._changed.wait()
        return self._state
