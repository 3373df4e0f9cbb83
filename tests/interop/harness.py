"""One harness for the interop cases: runs a case over native grpc.aio, over
WebSocketServer + WebSocketChannel and over WebSocketServer + InProcessChannel, each
with a fresh server and servicer, and reports what the caller saw, how the handlers
ended and what the server logged, so a test can require them to be equal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from src.proto.grpc.testing import test_pb2_grpc

from client.inprocess import InProcessChannel
from client.ws_channel import WebSocketChannel
from server.ws.server import WebSocketServer
from tests.interop.cases import CASES, CaseOutcome
from tests.interop.observer import HandlerObserver, HandlerRecord
from tests.interop.servicer import InteropServicer, add_interop_service

TRANSPORTS = ("grpc", "ws", "inprocess")
REFERENCE = "grpc"
CASE_TIMEOUT_SECONDS = 30.0
# Loggers of the serving side: grpc.aio's own and syncwire's server package.
SERVER_LOGGERS = ("grpc._cython", "server")


@dataclass
class TransportRun:
    """What one transport did with one case."""

    outcome: CaseOutcome
    handlers: list[HandlerRecord] | None  # None when the case's handler count is timing-bound
    server_logs: list[str]  # level names of the WARNING-or-worse server records


@dataclass
class Served:
    """A channel to a fresh server; ``ws_server`` is the WebSocketServer behind it (None
    for native gRPC)."""

    channel: grpc.aio.Channel
    ws_server: WebSocketServer | None


@contextlib.asynccontextmanager
async def serving(
    transport: str,
    register: Callable[[grpc.aio.Server], None],
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
) -> AsyncIterator[Served]:
    """A fresh server of ``transport`` ("grpc", "ws" or "inprocess") on which
    ``register`` added its services, and a channel to it; both closed at exit."""
    if transport == "grpc":
        native = grpc.aio.server(options=[("grpc.so_reuseport", 0)], interceptors=interceptors)
        register(native)
        port = native.add_insecure_port("127.0.0.1:0")
        await native.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield Served(channel, None)
        finally:
            await native.stop(None)
        return
    ws_server = WebSocketServer(interceptors=interceptors)
    register(ws_server)
    ws_port = ws_server.add_insecure_port("127.0.0.1:0") if transport == "ws" else 0
    await ws_server.start()
    channel = (
        WebSocketChannel(f"ws://127.0.0.1:{ws_port}")
        if transport == "ws"
        else InProcessChannel(ws_server)
    )
    try:
        async with channel:
            yield Served(channel, ws_server)
    finally:
        await ws_server.stop(None)


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(SERVER_LOGGERS):
            self.records.append(record.levelname)


@contextlib.contextmanager
def server_logs() -> Iterator[list[str]]:
    """Collects the levels of WARNING-or-worse records of the serving side while the
    block runs (the wording differs between grpc.aio and syncwire and is not compared)."""
    collector = _Collector()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield collector.records
    finally:
        root.removeHandler(collector)


async def run_case(case: str, transport: str) -> TransportRun:
    """Runs one interop case over one transport, with a fresh server."""
    observer = HandlerObserver()
    servicer = InteropServicer(observer)
    async with serving(transport, lambda server: add_interop_service(server, servicer)) as served:
        stub = test_pb2_grpc.TestServiceStub(served.channel)
        unimplemented = test_pb2_grpc.UnimplementedServiceStub(served.channel)
        with server_logs() as logs:
            async with asyncio.timeout(CASE_TIMEOUT_SECONDS):
                outcome = await CASES[case](stub, unimplemented)
                handlers = (
                    None
                    if outcome.handler_calls is None
                    else await observer.wait_for(outcome.handler_calls)
                )
        return TransportRun(outcome, handlers, list(logs))
