"""``python -m tests.interop.server``: the gRPC interop test service on a native gRPC
port and a WebSocket port, for clients in other processes (the web package's Node and
browser interop runs).

Prints one line when ready, then serves until SIGTERM or SIGINT
(``--allowed-origins PATTERNS``, as the server's option, lets browser pages from other
origins connect):
``interop ready grpc=127.0.0.1:PORT ws=ws://127.0.0.1:PORT``. Ports default to 0
(ephemeral).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio

from server.ws.origin import parse_patterns
from server.ws.server import WebSocketServer
from tests.interop.servicer import InteropServicer, add_interop_service


@dataclass
class InteropServers:
    """The interop service on both listeners, sharing one servicer."""

    servicer: InteropServicer
    grpc_server: grpc.aio.Server
    ws_server: WebSocketServer
    grpc_address: str
    ws_url: str

    def ready_line(self) -> str:
        return f"interop ready grpc={self.grpc_address} ws={self.ws_url}"


@contextlib.asynccontextmanager
async def interop_servers(
    host: str = "127.0.0.1",
    grpc_port: int = 0,
    ws_port: int = 0,
    allowed_origins: Sequence[str] = (),
) -> AsyncIterator[InteropServers]:
    """Starts the interop service on native gRPC and on WebSocket; stops both at exit.
    ``allowed_origins``: browser pages allowed besides the server's own host."""
    servicer = InteropServicer()
    grpc_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    ws_server = WebSocketServer(allowed_origins=allowed_origins)
    for target in (grpc_server, ws_server):
        add_interop_service(target, servicer)
    bound_grpc = grpc_server.add_insecure_port(f"{host}:{grpc_port}")
    bound_ws = ws_server.add_insecure_port(f"{host}:{ws_port}")
    await grpc_server.start()
    await ws_server.start()
    try:
        yield InteropServers(
            servicer, grpc_server, ws_server, f"{host}:{bound_grpc}", f"ws://{host}:{bound_ws}"
        )
    finally:
        await asyncio.gather(grpc_server.stop(1.0), ws_server.stop(1.0))


async def _serve(args: argparse.Namespace) -> None:
    async with interop_servers(
        args.host, args.grpc_port, args.ws_port, parse_patterns(args.allowed_origins)
    ) as servers:
        print(servers.ready_line(), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.interop.server",
        description="Serve the gRPC interop TestService over native gRPC and WebSocket.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--ws-port", type=int, default=0)
    parser.add_argument(
        "--allowed-origins",
        default="",
        metavar="PATTERNS",
        help="browser page origins allowed besides the server's own host: glob patterns "
        "separated by commas, as the server's --allowed-origins",
    )
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
