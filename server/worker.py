"""One worker process of `--workers N`; started by `server.supervisor`, not by hand.

The supervisor writes one JSON line to the worker's stdin, `{"config": {ServerConfig
fields, ports already resolved}, "uvloop": bool}` (the worker runs on uvloop when the
supervisor does), and keeps that pipe open. The
worker serves with SO_REUSEPORT on the shared ports, prints its ready line on stdout,
and drains and exits on SIGTERM/SIGINT or when stdin reaches end of file (the
supervisor is gone), so a killed supervisor never leaves workers behind.
Exit codes as `python -m server` (`server.app.run_server`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from wire.tasks import cancel_and_wait

from .app import run_server, serve
from .config import ServerConfig
from .logs import configure_logging

log = logging.getLogger(__name__)


async def _stop_at_eof(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while await reader.read(4096):
            pass
        stop.set()
    finally:
        transport.close()


async def _run(config: ServerConfig) -> None:
    stop = asyncio.Event()
    watcher = asyncio.create_task(_stop_at_eof(stop), name="syncwire-supervisor-watch")
    try:
        await serve(config, reuse_port=True, stop=stop, announce_stop=False)
    finally:
        await cancel_and_wait(watcher, log, "the supervisor watch")


def main() -> int:
    """A worker process of the supervisor: reads its ServerConfig as one JSON line on
    stdin and serves with SO_REUSEPORT until told to stop; returns the exit code
    (2 for a bad configuration, as `python -m server`).
    """
    try:
        order = json.loads(sys.stdin.buffer.readline())
        config = ServerConfig(**order["config"])
    except (ValueError, TypeError, KeyError) as exc:  # ConfigError is a ValueError
        print(f"syncwire-server worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    if order.get("uvloop"):
        import uvloop  # the supervisor ran on it, so it is installed

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return run_server(_run(config), "syncwire-server")


if __name__ == "__main__":
    sys.exit(main())
