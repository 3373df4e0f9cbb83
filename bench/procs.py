"""Child processes of the bench: start them, read their ready line, watch their RSS and
CPU in /proc, stop them. Linux only (the bench measures a Linux server class)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 30.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ProcessFailed(RuntimeError):
    """A child process did not become ready or died; the message carries its stderr."""


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ProcessFailed(f"process {pid} has no VmRSS")


def children(pid: int) -> list[int]:
    """Process ids of `pid`'s children (a supervisor's workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def parse_ready(line: str, marker: str) -> dict[str, str] | None:
    """`key=value` tokens after `marker` in a ready line, None if it is not one."""
    if marker not in line:
        return None
    tail = line.split(marker, 1)[1]
    return dict(token.split("=", 1) for token in tail.split() if "=" in token)


@dataclass
class ChildProcess:
    """A started child with its ready-line endpoints; stderr goes to a temporary file
    so a failure can be explained without the pipe ever filling up."""

    name: str
    process: asyncio.subprocess.Process
    endpoints: dict[str, str]
    stderr_path: Path
    _drain: asyncio.Task[None] | None = field(default=None, repr=False)
    scratch: Path | None = None
    """A directory of the child's own files (a Redis Cluster node's), removed on stop."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self.process.returncode is None

    def stderr_tail(self, limit: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_text(errors="replace")[-limit:]
        return ""

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit within `timeout`."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
        with contextlib.suppress(OSError):
            self.stderr_path.unlink()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def start_module(
    name: str, module: str, args: list[str], *, marker: str, env: dict[str, str] | None = None
) -> ChildProcess:
    """`start_child` for ``python -m module *args``."""
    return await start_child(name, [sys.executable, "-m", module, *args], marker=marker, env=env)


async def start_child(
    name: str, argv: list[str], *, marker: str, env: dict[str, str] | None = None
) -> ChildProcess:
    """Runs `argv` and waits for the stdout line containing `marker`; its ``key=value``
    tokens become the endpoints. Later stdout is discarded. The child's stdin is a pipe
    that stays open while it runs (bench servers exit when it closes)."""
    handle, stderr_name = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
    with os.fdopen(handle, "wb") as stderr_file:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr_file,
            env={**os.environ, **(env or {})},
        )
    child = ChildProcess(name, process, {}, Path(stderr_name))
    assert process.stdout is not None
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            while True:
                line = await process.stdout.readline()
                if not line:
                    await process.wait()
                    raise ProcessFailed(
                        f"{name} exited with {process.returncode} before it was ready: "
                        f"{child.stderr_tail()}"
                    )
                endpoints = parse_ready(line.decode(errors="replace"), marker)
                if endpoints is not None:
                    child.endpoints = endpoints
                    break
    except BaseException:
        await child.stop(timeout=2.0)
        raise
    child._drain = asyncio.create_task(_discard(process.stdout))
    return child


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs of the machine have spent busy (not idle or waiting on I/O)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _CLOCK_TICKS


class CpuWindow:
    """Cores used by groups of processes, and by the whole machine, between `begin`
    and `end` (1.0 = one core fully busy)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._start: dict[int, float] = {}
        self._machine = 0.0
        self._wall = 0.0

    def begin(self) -> None:
        self._wall = time.monotonic()
        self._machine = machine_busy_seconds()
        self._start = {pid: _cpu_or_zero(pid) for pids in self.groups.values() for pid in pids}

    def end(self) -> dict[str, float]:
        wall = max(time.monotonic() - self._wall, 1e-9)
        used = {
            name: sum(_cpu_or_zero(pid) - self._start[pid] for pid in pids) / wall
            for name, pids in self.groups.items()
        }
        used["machine"] = (machine_busy_seconds() - self._machine) / wall
        return used


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


__all__ = [
    "ChildProcess",
    "CpuWindow",
    "ProcessFailed",
    "cpu_seconds",
    "parse_ready",
    "rss_bytes",
    "start_child",
    "start_module",
]
