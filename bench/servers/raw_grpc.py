"""Baseline: a raw grpc.aio server moving pre-serialized bytes (no protobuf, no logic).

``/bench.Raw/Fanout`` (bidi): each stream first gets an empty ready message, then every
message any stream sends, the sender included. ``/bench.Raw/Echo`` (unary) answers a
request with itself. Run: ``python -m bench.servers.raw_grpc``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

import grpc

from bench.loop import run_server, server_arguments, wait_for_stop_signal
from bench.servers import READY_MARKER

FANOUT_METHOD = "/bench.Raw/Fanout"
ECHO_METHOD = "/bench.Raw/Echo"

# The syncwire server's keepalive settings, so both servers hold streams the same way.
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 2**20),
    ("grpc.max_send_message_length", -1),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.so_reuseport", 0),
]


class _Outbox:
    """One stream's pending messages."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: deque[bytes] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def put(self, message: bytes) -> None:
        self.items.append(message)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> bytes:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.popleft()


class RawHandlers(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Generic handlers without (de)serializers: requests and responses stay bytes."""

    def __init__(self) -> None:
        self.outboxes: dict[_Outbox, None] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method = handler_call_details.method
        if method == FANOUT_METHOD:
            return grpc.stream_stream_rpc_method_handler(self.fanout)
        if method == ECHO_METHOD:
            return grpc.unary_unary_rpc_method_handler(self.echo)
        return None

    async def echo(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    async def fanout(
        self,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[bytes, bytes],
    ) -> AsyncIterator[bytes]:
        outbox = _Outbox()
        self.outboxes[outbox] = None
        reader = asyncio.create_task(self._relay(requests))
        try:
            yield b""
            while True:
                yield await outbox.get()
        finally:
            self.outboxes.pop(outbox, None)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
                await reader

    async def _relay(self, requests: AsyncIterator[bytes]) -> None:
        async for message in requests:
            for outbox in tuple(self.outboxes):
                outbox.put(message)


async def main(host: str, port: int) -> None:
    server = grpc.aio.server(options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((RawHandlers(),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    print(f"{READY_MARKER} grpc={host}:{bound}", flush=True)
    await wait_for_stop_signal()
    await server.stop(0)


def cli() -> None:
    parser = server_arguments(__doc__)
    args = parser.parse_args()
    run_server(main(args.host, args.port))


if __name__ == "__main__":
    cli()
