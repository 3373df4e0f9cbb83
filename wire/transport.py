"""The message pipe a multiplexer driver runs over: a WebSocket or an in-memory pair.

A ``websockets.asyncio`` connection satisfies this protocol as it is; the in-memory pipe
of the in-process channel mimics it, including raising
``websockets.exceptions.ConnectionClosed`` from ``recv``/``send`` once closed.
"""

from __future__ import annotations

from typing import Protocol


class MessageTransport(Protocol):
    """One bidirectional pipe of whole messages, as a WebSocket connection offers."""

    async def recv(self) -> bytes | str:
        """The next message; raises ConnectionClosed once the pipe is closed."""
        ...

    async def send(self, message: bytes) -> None:
        """Sends one binary message; raises ConnectionClosed once the pipe is closed."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Closes the pipe (WebSocket close code and reason)."""
        ...
