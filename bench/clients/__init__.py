"""Bench clients by kind name; the worker builds them from (kind, endpoint, options)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from bench.clients.base import FanoutClient, IdleClient, RpcTarget

SYNCWIRE_GRPC = "syncwire-grpc"
SYNCWIRE_WS = "syncwire-ws"
LEGACY_JSON = "legacy-json"
RAW_WS = "raw-ws"
RAW_GRPC = "raw-grpc"
SOCKETIO = "socketio"

T = TypeVar("T")


def fanout_client(kind: str, endpoint: str, *, compression: bool = False) -> FanoutClient:
    """A subscriber/publisher connection of `kind` to `endpoint` (URL or host:port)."""
    from bench.clients import json_clients, raw, syncwire

    makers: dict[str, Callable[[], FanoutClient]] = {
        SYNCWIRE_GRPC: lambda: syncwire.SyncwireFanout(endpoint, syncwire.grpc_channel),
        SYNCWIRE_WS: lambda: syncwire.SyncwireFanout(
            endpoint, syncwire.ws_channel_factory(compression)
        ),
        LEGACY_JSON: lambda: json_clients.LegacyJsonFanout(endpoint, compression),
        RAW_WS: lambda: raw.RawWebSocketFanout(endpoint, compression),
        RAW_GRPC: lambda: raw.RawGrpcFanout(endpoint),
        SOCKETIO: lambda: json_clients.SocketIoFanout(endpoint),
    }
    return _pick(makers, kind, "fan-out")()


def rpc_target(kind: str, endpoint: str, *, compression: bool = False) -> RpcTarget:
    """Unary callers of `kind`: syncwire Publish, or a raw echo."""
    from bench.clients import raw, syncwire

    makers: dict[str, Callable[[], RpcTarget]] = {
        SYNCWIRE_GRPC: lambda: syncwire.SyncwireRpc(endpoint, syncwire.grpc_channel),
        SYNCWIRE_WS: lambda: syncwire.SyncwireRpc(
            endpoint, syncwire.ws_channel_factory(compression)
        ),
        RAW_WS: lambda: raw.RawWebSocketEcho(endpoint, compression),
        RAW_GRPC: lambda: raw.RawGrpcEcho(endpoint),
    }
    return _pick(makers, kind, "rpc")()


def idle_client(kind: str, endpoint: str, *, compression: bool = False) -> IdleClient:
    """One idle connection of `kind`."""
    from bench.clients import raw, syncwire

    makers: dict[str, Callable[[], IdleClient]] = {
        SYNCWIRE_GRPC: lambda: syncwire.SyncwireIdle(endpoint, syncwire.grpc_channel),
        SYNCWIRE_WS: lambda: syncwire.SyncwireIdle(
            endpoint, syncwire.ws_channel_factory(compression)
        ),
        RAW_WS: lambda: raw.RawWebSocketIdle(endpoint, compression),
    }
    return _pick(makers, kind, "idle")()


def _pick(makers: dict[str, Callable[[], T]], kind: str, what: str) -> Callable[[], T]:
    try:
        return makers[kind]
    except KeyError:
        raise ValueError(f"no {what} client of kind {kind!r}; known: {sorted(makers)}") from None
