"""Serves Greeter alone (no sync service) on a native gRPC port and a WebSocket port.

``python -m examples.greeter.server`` prints one line when ready:
``greeter ready grpc=127.0.0.1:PORT ws=ws://127.0.0.1:PORT``. To serve Greeter next to
SyncService instead: ``syncwire serve --services examples.greeter.service:add_services``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from examples.greeter.service import add_services
from server.ws import WebSocketServer


@contextlib.asynccontextmanager
async def greeter_servers(
    host: str = "127.0.0.1", grpc_port: int = 0, ws_port: int = 0
) -> AsyncIterator[tuple[str, str]]:
    """Greeter on both listeners; yields (grpc address, ws URL)."""
    native = grpc.aio.server()
    websocket = WebSocketServer()  # a grpc.aio.Server: registration is the same call
    add_services(native)
    add_services(websocket)
    bound_grpc = native.add_insecure_port(f"{host}:{grpc_port}")
    bound_ws = websocket.add_insecure_port(f"{host}:{ws_port}")
    await native.start()
    await websocket.start()
    try:
        yield f"{host}:{bound_grpc}", f"ws://{host}:{bound_ws}"
    finally:
        await asyncio.gather(native.stop(1.0), websocket.stop(1.0))


async def main() -> None:
    async with greeter_servers() as (grpc_address, ws_url):
        print(f"greeter ready grpc={grpc_address} ws={ws_url}", flush=True)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
