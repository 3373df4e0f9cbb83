"""One channel per endpoint, shared by every call until the connection is known bad.

The sync stream, unary calls and hybrid probes of one endpoint all go through the same
channel, so they share one connection. A channel whose connection failed (or went
half-open) is closed and replaced: a fresh channel starts without grpc's internal
reconnect backoff and never reuses a dead socket.
"""

from __future__ import annotations

import contextlib
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
        self.opened = 0
        """How many channels this pool created (a churn indicator)."""

    def get(self, endpoint: Endpoint) -> grpc.aio.Channel:
        """The endpoint's channel, created on first use."""
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = self._channels[endpoint] = self._factory(endpoint, self._settings)
            self.opened += 1
        return channel

    async def discard(self, endpoint: Endpoint) -> None:
        """Closes the endpoint's channel; the next `get` opens a fresh one."""
        channel = self._channels.pop(endpoint, None)
        if channel is not None:
            await _close(channel)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await _close(channel)


async def _close(channel: grpc.aio.Channel) -> None:
    with contextlib.suppress(Exception):
        await channel.close(None)
