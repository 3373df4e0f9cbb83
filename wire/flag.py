"""A lighter asyncio.Event for the per-connection and per-call signals of the hot path.

``asyncio.Event`` allocates a deque of waiters up front (about 600 bytes); a server
holds several per connection and creates two per call, most of which nobody ever waits
on. ``Flag`` has the same interface and semantics (``set`` wakes every waiter, ``clear``
does not unwake one already woken) and keeps its waiters in a list created by the first
``wait``.
"""

from __future__ import annotations

import asyncio


class Flag:
    """``asyncio.Event``'s ``set``/``clear``/``is_set``/``wait``, with lazy waiters."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._value

    def set(self) -> None:
        """Sets the flag and wakes everyone waiting."""
        if self._value:
            return
        self._value = True
        waiters, self._waiters = self._waiters, None
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        """Unsets the flag (waiters already woken stay woken)."""
        self._value = False

    async def wait(self) -> bool:
        """Returns True once the flag is set (at once if it is)."""
        if self._value:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        try:
            await waiter
        finally:
            waiters = self._waiters
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
        return True
