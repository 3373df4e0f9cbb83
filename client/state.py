"""The client's connection state and the ways to observe it.

Applications read `SyncClient.state`, iterate `SyncClient.state_changes()`, or register a
callback; each observer sees every change after it started observing, in order.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .errors import SyncError

log = logging.getLogger(__name__)


class ConnectionState(enum.Enum):
    """Where the client's connection stands.

    CONNECTING: first connection attempt(s), never connected yet.
    CONNECTED: a stream is open and every subscription has been (re)established.
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


class StateTracker:
    """Holds the current state and fans changes out to iterators and callbacks."""

    def __init__(self, initial: ConnectionState = ConnectionState.OFFLINE) -> None:
        self._state = initial
        self._last: StateChange | None = None
        self._listeners: list[StateListener] = []
        self._queues: set[asyncio.Queue[StateChange]] = set()
        self._changed = asyncio.Event()

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def last_change(self) -> StateChange | None:
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
        for queue in self._queues:
            queue.put_nowait(change)
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
        """Every change from the moment of this call on; ends after CLOSED."""
        queue: asyncio.Queue[StateChange] = asyncio.Queue()
        if self._state is not ConnectionState.CLOSED:
            self._queues.add(queue)
        return self._drain(queue)

    async def _drain(self, queue: asyncio.Queue[StateChange]) -> AsyncIterator[StateChange]:
        try:
            while queue in self._queues or not queue.empty():
                change = await queue.get()
                yield change
                if change.state is ConnectionState.CLOSED:
                    return
        finally:
            self._queues.discard(queue)

    async def wait_for(self, *states: ConnectionState) -> ConnectionState:
        """Returns as soon as the state is one of `states` (at once if it already is)."""
        while self._state not in states:
            if self._state is ConnectionState.CLOSED:
                return self._state
            await self._changed.wait()
        return self._state
