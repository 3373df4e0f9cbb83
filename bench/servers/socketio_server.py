"""Baseline: a python-socketio server (aiohttp) that emits each published message to a
room. Events: ``join(room)`` enters a room (acknowledged), ``pub(room, data)`` emits
``delta`` with `data` to everyone in the room, the sender included.
Run: ``python -m bench.servers.socketio_server``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import socketio
from aiohttp import web

from bench.loop import exit_with_parent, raise_nofile_limit, run
from bench.servers import READY_MARKER


def build_server() -> tuple[Any, web.Application]:
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
    app = web.Application()
    sio.attach(app)

    async def join(sid: str, room: str) -> str:
        await sio.enter_room(sid, room)
        return "ok"

    async def pub(sid: str, room: str, data: Any) -> None:
        await sio.emit("delta", data, room=room)

    sio.on("join", join)
    sio.on("pub", pub)
    return sio, app


async def main(host: str, port: int) -> None:
    _, app = build_server()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    print(f"{READY_MARKER} url=http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    raise_nofile_limit()
    exit_with_parent()
    run(main(args.host, args.port))


if __name__ == "__main__":
    cli()
