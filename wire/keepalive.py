"""WebSocket keepalive that fails a silent peer at once.

websockets' own keepalive, when a pong does not come within ``ping_timeout``, starts a
closing handshake and only drops the TCP connection after ``close_timeout`` more
seconds, so everything that waits for the connection to end (a session, its presence,
its slot) waits that long too for a peer already known to be dead. It also sends its
ping before starting the timeout, so a peer that stopped reading (a full socket buffer)
blocks the ping and is never timed out at all.

`FailFastKeepalive` replaces that loop: the ping and its pong must both complete within
``ping_timeout``; otherwise the connection is *failed* as RFC 6455 section 7.1.7 allows:
a close frame 1011 is written if the socket takes it, and the TCP connection is aborted
without waiting for the peer's answer. Readers then see `ConnectionClosed` at once.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

from wire.protocol import KEEPALIVE_TIMEOUT

_LOG = logging.getLogger(__name__)


class FailFastKeepalive(Connection):
    """Mixin for websockets' asyncio `ServerConnection` / `ClientConnection` (put it
    first in the bases); uses the connection's ``ping_interval`` and ``ping_timeout``."""

    async def keepalive(self) -> None:
        assert self.ping_interval is not None
        latency = 0.0
        try:
            while True:
                await asyncio.sleep(max(self.ping_interval - latency, 0.0))
                if self.ping_timeout is None:
                    await self.ping()
                    continue
                try:
                    async with asyncio.timeout(self.ping_timeout):
                        pong = await self.ping()
                        latency = await pong
                except TimeoutError:
                    self.fail_now(CloseCode.INTERNAL_ERROR, KEEPALIVE_TIMEOUT)
                    return
        except ConnectionClosed:
            return

    def fail_now(self, code: int, reason: str) -> None:
        """Fails the connection: queues a close frame if the connection is still open,
        writes what the socket accepts without waiting, and aborts the TCP connection.
        `recv` and friends raise `ConnectionClosed` as soon as the loop runs again."""
        _LOG.info("%s: failing the connection: %s", self.remote_address, reason)
        if self.protocol.state is State.OPEN:
            self.protocol.fail(code, reason)
            for data in self.protocol.data_to_send():
                if data and not self.transport.is_closing():
                    self.transport.write(data)  # buffered; never waits for the peer
        self.transport.abort()
