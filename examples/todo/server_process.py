"""Runs ``python -m server`` on free loopback ports for the length of the example."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

READY = re.compile(r"syncwire ready grpc=(?P<grpc>\S+) ws=(?P<ws>\S+)")


@dataclass(frozen=True, slots=True)
class Addresses:
    grpc_url: str
    ws_url: str


@contextlib.asynccontextmanager
async def local_server(
    start_timeout: float = 20.0, extra_args: Sequence[str] = ()
) -> AsyncIterator[Addresses]:
    """A server process on ports the OS picks (with `extra_args`, e.g.
    ``("--allowed-origins", origin)``); stopped (SIGTERM) on exit."""
    with tempfile.TemporaryFile() as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "--grpc-port",
            "0",
            "--ws-port",
            "0",
            *extra_args,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        try:
            assert process.stdout is not None
            async with asyncio.timeout(start_timeout):
                line = (await process.stdout.readline()).decode()
            match = READY.search(line)
            if match is None:
                await process.wait()
                log.seek(0)
                raise RuntimeError(f"the server did not start: {log.read().decode()[-500:]}")
            yield Addresses(f"grpc://{match['grpc']}", match["ws"])
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(15):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()
