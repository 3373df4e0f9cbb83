"""One channel per endpoint, shared by every call until the connection is known bad.

The sync stream, unary calls and hybrid probes of one endpoint all go through the same
channel, so they share one connection. A channel whose connection failed (or went
half-open) is closed and replaced: a fresh channel starts without grpc's internal
reconnect backoff and never reuses a dead socket. Closing happens in the background: a
half-open WebSocket can take its whole close timeout to give up, and reconnecting must
not wait for that.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import grpc.aio

from .endpoints import ChannelFactory, ChannelSettings, Endpoint

log = logging.getLogger(__name__)


class ChannelPool:
    """Owns the client's channels; closing the pool closes them all."""

    def __init__(self, factory: ChannelFactory, settings: ChannelSettings) -> None:
        self._factory = factory
        self._settings = settings
        self._channels: dict[Endpoint, grpc.aio.Channel] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.opened = 0
        """How many channels this pool created (a churn indicator)."""

    def get(self, endpoint: Endpoint) -> grpc.aio.Channel:
        """The endpoint's channel, created on first use."""
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = self._channels[endpoint] = self._factory(endpoint, self._settings)
            self.opened += 1
        return channel

    def discard(self, endpoint: Endpoint) -> None:
        """Forgets the endpoint's channel and closes it in the background; the next
        `get` opens a fresh one."""
        channel = self._channels.pop(endpoint, None)
        if channel is not None:
            task = asyncio.create_task(_close(channel), name="syncwire-channel-close")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self, timeout: float = 2.0) -> None:
        """Closes every channel, waiting at most `timeout` s for them to finish."""
        for endpoint in list(self._channels):
            self.discard(endpoint)
        closing = list(self._closing)
        if not closing:
            return
        _, unfinished = await asyncio.wait(closing, timeout=timeout)
        if unfinished:
            log.warning("%d channels did not close within %.1f s", len(unfinished), timeout)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)


async def _close(channel: grpc.aio.Channel) -> None:
    try:
        await channel.close(None)
    except Exception:
        log.warning("closing a channel failed", exc_info=True)
