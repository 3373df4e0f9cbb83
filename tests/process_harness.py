"""Runs `python -m server` as a real subprocess and reads its ready line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass

READY = re.compile(r"syncwire ready grpc=(?P<grpc>\S+) ws=(?P<ws>\S+)")


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    grpc_address: str
    ws_url: str
    ready_line: str = ""

    async def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit in time."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.kill()
            await self.process.wait()
            raise

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


async def start_server_process(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """Starts the server with `args` (ports default to 0) and waits for its ready line."""
    argv = [sys.executable, "-m", "server", "--grpc-port", "0", "--ws-port", "0", *args]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(20):
            line = await process.stdout.readline()
    except TimeoutError:
        process.kill()
        raise
    match = READY.search(line.decode())
    if match is None:
        process.kill()
        _, err = await process.communicate()
        raise AssertionError(f"server did not start: {line!r} {err.decode()[-2000:]}")
    return ServerProcess(process, match["grpc"], match["ws"], line.decode().strip())


@dataclass(frozen=True)
class Finished:
    """A finished subprocess: exit code and decoded output."""

    returncode: int
    stdout: str
    stderr: str


async def run_python(*args: str, timeout: float = 60.0) -> Finished:
    """Runs ``python ARGS`` (this interpreter) to completion within ``timeout`` seconds."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())
