"""Baseline: a raw `websockets` server, the least a WebSocket server can do.

Paths: ``/broadcast/<room>`` rebroadcasts every message to every connection of that
room (the sender included) with ``websockets.broadcast``; ``/echo`` answers each message with
itself; anything else holds the connection idle. Run: ``python -m bench.servers.raw_ws``.
"""

from __future__ import annotations

import argparse

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.loop import run_server, server_arguments, wait_for_stop_signal
from bench.servers import READY_MARKER
from wire.deflate import DeflateSettings


class RawWebSocketServer:
    """Connection handler of the baseline server."""

    def __init__(self) -> None:
        self.rooms: dict[str, set[ServerConnection]] = {}

    async def handle(self, websocket: ServerConnection) -> None:
        path = websocket.request.path if websocket.request is not None else "/"
        if path.startswith("/broadcast"):
            room = self.rooms.setdefault(path, set())
            room.add(websocket)
            try:
                async for message in websocket:
                    broadcast(room, message)
            finally:
                room.discard(websocket)
                if not room:
                    self.rooms.pop(path, None)
        elif path.startswith("/echo"):
            async for message in websocket:
                await websocket.send(message)
        else:
            await websocket.wait_closed()


async def main(host: str, port: int, compression: bool) -> None:
    handler = RawWebSocketServer()
    # permessage-deflate with the syncwire server's default settings (window bits and
    # memLevel), so that both pay the same zlib state per connection.
    extensions = [DeflateSettings().server_extension()] if compression else []
    async with serve(
        handler.handle,
        host,
        port,
        compression=None,
        extensions=extensions,
        max_size=2**20,
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"{READY_MARKER} ws=ws://{host}:{bound}", flush=True)
        await wait_for_stop_signal()


def cli() -> None:
    parser = server_arguments(__doc__)
    parser.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="negotiate permessage-deflate when a client offers it, with the syncwire "
        "server's default window bits and memLevel",
    )
    args = parser.parse_args()
    run_server(main(args.host, args.port, args.compression))


if __name__ == "__main__":
    cli()
