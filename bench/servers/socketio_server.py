"""Baseline: a python-socketio server (aiohttp) that emits each published message to a
room. Events: ``join(room)`` enters a room (acknowledged), ``pub(room, data)`` emits
``delta`` with `data` to everyone in the room, the sender included.
Run: ``python -m bench.servers.socketio_server``.
"""

from __future__ import annotations

from typing import Any

import socketio
from aiohttp import web

from bench.loop import run_server, server_arguments, wait_for_stop_signal
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
    await wait_for_stop_signal()
    await runner.cleanup()


def cli() -> None:
    parser = server_arguments(__doc__)
    args = parser.parse_args()
    run_server(main(args.host, args.port))


if __name__ == "__main__":
    cli()
