"""The message pipe a multiplexer driver runs over: a WebSocket or an in-memory pair."""

from __future__ import annotations

from typing import Protocol


class MessageTransport(Protocol):
    """One bidirectional pipe of whole messages, as a WebSocket connection offers."""

    async def recv(self) -> bytes | str | None:
        """The next message, or None once the pipe is closed."""
        ...

    async def send(self, message: bytes) -> None:
        """Sends one binary message; raises TransportClosed once the pipe is closed."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Closes the pipe (WebSocket close code and reason)."""
        ...


class TransportClosed(ConnectionError):
    """The pipe closed; carries the close code and reason when known."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}): {reason}" if code else "connection closed")
        self.code = code
        self.reason = reason
