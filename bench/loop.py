"""Event loop and process limits shared by the bench's parent, servers and workers."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

UVLOOP_ENV = "SYNCWIRE_BENCH_UVLOOP"
"""Set to 0 in the environment to run every bench process on the default asyncio loop."""


def uvloop_wanted() -> bool:
    """Whether uvloop should be used: installed and not switched off by the environment."""
    if os.environ.get(UVLOOP_ENV, "1") == "0":
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def install_uvloop() -> bool:
    """Makes later ``asyncio.run`` calls use uvloop (for code that calls asyncio.run
    itself, like the server's entry point); returns whether it did."""
    if not uvloop_wanted():
        return False
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run(main: Coroutine[Any, Any, T]) -> T:
    """Runs `main` on uvloop when wanted, else on the default loop."""
    install_uvloop()
    return asyncio.run(main)


def raise_nofile_limit() -> int:
    """Raises the soft open-file limit to the hard limit (children inherit it); returns
    the new soft limit. Thousands of idle connections need thousands of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
        return hard
    return soft


def exit_with_parent() -> None:
    """Sends this process SIGTERM once its stdin reaches EOF: the bench keeps a pipe to
    every child's stdin open, so children stop even if the bench itself is killed."""

    def watch() -> None:
        try:
            while sys.stdin.buffer.read(65536):
                pass
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


async def wait_for_stop_signal() -> None:
    """Returns on SIGTERM or SIGINT: how a bench server knows to shut down."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def server_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The flags every baseline server takes (--host, --port)."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    return parser


def run_server(main: Coroutine[Any, Any, None]) -> None:
    """Runs a bench server process: more descriptors, exit with the bench, uvloop."""
    raise_nofile_limit()
    exit_with_parent()
    run(main)
