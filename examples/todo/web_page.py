"""``python -m examples.todo --web``: the todo list in a browser, beside the Python clients.

Serves examples/todo/web (index.html and todo.js, the bundle of web/examples/todo/page.ts
built by ``npm run build:todo`` in web/; committed prebuilt, so no Node is needed) from
a loopback HTTP origin, starts a local server that allows that origin (or uses --ws),
and prints the page's URL and the command that lets the Python typed client and the
legacy JSON client edit the same list. Runs until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.server
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

from .server_process import local_server

WEB_DIR = Path(__file__).parent / "web"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_page(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serves the page's directory over HTTP; yields the origin (``http://host:port``)."""
    handler = functools.partial(_QuietHandler, directory=str(WEB_DIR))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, name="todo-page", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def _announce(origin: str, grpc_url: str | None, ws_url: str, collection: str) -> None:
    query = urlencode({"ws": ws_url, "collection": collection})
    print(f"todo page: {origin}/?{query}", flush=True)
    if grpc_url is not None:
        print(
            "Python typed and legacy JSON clients: python -m examples.todo "
            f"--grpc {grpc_url} --ws {ws_url} --collection {collection}",
            flush=True,
        )


async def serve(args: argparse.Namespace) -> int:
    """Runs the web mode until SIGINT/SIGTERM; returns the exit status."""
    collection = args.collection or "todo"
    with serve_page(port=args.port) as origin:
        if args.ws:
            _announce(origin, args.grpc, args.ws, collection)
            await _until_interrupted()
            return 0
        async with local_server(extra_args=("--allowed-origins", origin)) as server:
            _announce(origin, server.grpc_url, server.ws_url, collection)
            await _until_interrupted()
    return 0
