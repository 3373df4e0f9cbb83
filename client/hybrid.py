"""Hybrid mode: several endpoints in order of preference (typically gRPC, then WebSocket).

Each connection attempt walks the list from the most preferred endpoint and keeps the
first that answers. While connected to a fallback, `probe` checks the preferred ones
with a cheap unary call every probe interval; when one answers, the client moves back to
it (rejoining its collections from its last offsets, so nothing is lost on the way).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import grpc.aio

from syncwire.v1 import sync_pb2, sync_pb2_grpc

from .endpoints import Endpoint


class EndpointSelector:
    """The endpoints in order of preference."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        if not endpoints:
            raise ValueError("a client needs at least one endpoint")
        if len(set(endpoints)) != len(endpoints):
            raise ValueError("endpoints must be distinct")
        self.endpoints = tuple(endpoints)

    def candidates(self) -> tuple[Endpoint, ...]:
        """What a connection attempt tries, in order."""
        return self.endpoints

    def preferred_over(self, current: Endpoint) -> tuple[Endpoint, ...]:
        """Endpoints to move back to when they answer again (empty on the best one)."""
        index = self.endpoints.index(current) if current in self.endpoints else 0
        return self.endpoints[:index]


async def probe(
    channel: grpc.aio.Channel, timeout: float, metadata: tuple[tuple[str, str], ...] = ()
) -> bool:
    """True when the server behind `channel` answers GetServerInfo within `timeout`."""
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    try:
        await stub.GetServerInfo(
            sync_pb2.GetServerInfoRequest(), timeout=timeout, metadata=metadata or None
        )
    except grpc.aio.AioRpcError:
        return False
    return True
