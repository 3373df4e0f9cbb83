"""InProcessChannel: a grpc.aio.Channel to a WebSocketServer in the same process.

The same multiplexer and framing as WebSocketChannel run over an in-memory message pipe
instead of a socket, for tests and embedded use. The server is anything with
``serve_transport`` (``server.ws.WebSocketServer`` has it); client/ never imports server/.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

from client._ws_channel_base import DEFAULT_MAX_RECEIVE_MESSAGE_BYTES, MultiplexedChannel
from wire.protocol import CLOSE_NORMAL, MAX_MESSAGE_BYTES_HEADER
from wire.transport import MessageTransport


class InProcessServer(Protocol):
    """The server side an InProcessChannel attaches to."""

    @property
    def max_message_bytes(self) -> int:
        """Largest call message the server accepts."""
        ...

    async def serve_transport(
        self,
        transport: MessageTransport,
        *,
        peer: str = ...,
        headers: Mapping[str, str] | None = ...,
    ) -> None:
        """Serves one connection over ``transport`` until it closes."""
        ...


class _PipeState:
    def __init__(self) -> None:
        self.close: Close | None = None


class MemoryPipeEnd:
    """One end of an in-memory message pipe, behaving like a websockets connection."""

    def __init__(
        self,
        inbox: asyncio.Queue[bytes | str | None],
        peer_inbox: asyncio.Queue[bytes | str | None],
        state: _PipeState,
    ) -> None:
        self._inbox = inbox
        self._peer_inbox = peer_inbox
        self._state = state

    def _closed_error(self) -> ConnectionClosedOK | ConnectionClosedError:
        close = self._state.close
        error = (
            ConnectionClosedOK
            if close is not None and close.code in (1000, 1001)
            else ConnectionClosedError
        )
        return error(close, None)

    async def recv(self) -> bytes | str:
        """The next message from the other end; raises websockets' ConnectionClosedOK
        (close code 1000/1001) or ConnectionClosedError once closed."""
        message = await self._inbox.get()
        if message is None:
            self._inbox.put_nowait(None)  # stay closed for later receivers
            raise self._closed_error()
        return message

    async def send(self, message: bytes) -> None:
        """Hands `message` to the other end; raises ConnectionClosedOK/Error once closed."""
        if self._state.close is not None:
            raise self._closed_error()
        self._peer_inbox.put_nowait(message)

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Closes both directions with `code` and `reason` (later calls do nothing)."""
        if self._state.close is None:
            self._state.close = Close(code, reason)
            self._inbox.put_nowait(None)
            self._peer_inbox.put_nowait(None)


def memory_pipe() -> tuple[MemoryPipeEnd, MemoryPipeEnd]:
    """Two connected ends: what one sends, the other receives."""
    left: asyncio.Queue[bytes | str | None] = asyncio.Queue()
    right: asyncio.Queue[bytes | str | None] = asyncio.Queue()
    state = _PipeState()
    return MemoryPipeEnd(left, right, state), MemoryPipeEnd(right, left, state)


class InProcessChannel(MultiplexedChannel):
    """A channel whose connection is an in-memory pipe served by ``server``.

    ``headers`` play the part of handshake headers (for example ``authorization``).
    """

    def __init__(
        self,
        server: InProcessServer,
        *,
        headers: Mapping[str, str] | None = None,
        max_receive_message_bytes: int | None = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
        max_send_message_bytes: int | None = None,
    ) -> None:
        super().__init__(
            max_receive_message_bytes=max_receive_message_bytes,
            max_send_message_bytes=max_send_message_bytes,
        )
        self._server = server
        self._headers = {key.lower(): value for key, value in (headers or {}).items()}
        if max_receive_message_bytes is not None:
            self._headers[MAX_MESSAGE_BYTES_HEADER] = str(max_receive_message_bytes)
        self._serving: set[asyncio.Task[None]] = set()

    async def _open_transport(self) -> tuple[MessageTransport, int | None]:
        client_end, server_end = memory_pipe()
        task = asyncio.create_task(
            self._server.serve_transport(server_end, peer="inprocess", headers=self._headers)
        )
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)
        return client_end, self._server.max_message_bytes
