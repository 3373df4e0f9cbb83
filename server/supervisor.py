"""`--workers N`: N server processes on one host sharing the gRPC and WebSocket ports.

One asyncio process uses one core; the supervisor runs N of them (`python -m
server.worker`), gunicorn-style:

- the ports are resolved once (port 0 picks one free port for all workers) and held by
  sockets of the supervisor's that never listen; every worker listens on them with
  SO_REUSEPORT and the kernel spreads new connections among the workers;
- the workers share collections through the broker, so N > 1 needs a shared one
  (`ServerConfig` refuses memory:// with a clear error);
- host-wide limits stay host-wide: `ServerConfig.per_worker` splits `max_connections` and
  `max_connections_per_address` N ways (rate limits are per connection already);
- one readiness line once every worker is serving:
  `syncwire ready grpc=H:P ws=ws://H:P broker=URL workers=N [metrics=URL]`;
- a worker that exits (crash, SIGKILL) is restarted with capped exponential backoff;
  its clients reconnect to the others and recover by offset, its presence expires;
- SIGTERM/SIGINT drain every worker (`--shutdown-grace`), then the supervisor exits 0;
- metrics: workers run in prometheus-client's multiprocess mode and the supervisor
  serves the aggregate on `--metrics-port` (see `server.metrics`), plus
  `syncwire_worker_restarts_total` and `syncwire_workers`.

A worker that cannot start during start-up (bad TLS file, port in use) stops the whole
supervisor with the worker's exit code (2 configuration, 1 bind).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .app import os_error_reason
from .config import ServerConfig
from .metrics import MULTIPROCESS
from .ws.listener import reserve

log = logging.getLogger(__name__)

READY_PREFIX = b"syncwire ready "
READY_TIMEOUT = 60.0
"""Seconds a worker may take to print its ready line."""
RESTART_BASE = 0.25
RESTART_CAP = 10.0
STABLE_SECONDS = 10.0
"""A worker that ran this long restarts without backoff next time it dies."""
KILL_MARGIN = 10.0
"""Seconds past the shutdown grace before a worker that has not exited is killed."""


class WorkerFailed(Exception):
    """A worker exited (or hung) before it was ready; carries its exit code."""

    def __init__(self, index: int, code: int, said: bytes = b"") -> None:
        said_text = said.decode(errors="replace").strip()[:200]
        super().__init__(
            f"worker {index} did not start (exit code {code})"
            + (f"; it printed {said_text!r}" if said_text else "")
        )
        self.code = code


@dataclass(eq=False)
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    failures: int = 0
    output: asyncio.Task[None] | None = None
    """Reads (and drops) what the worker writes after its ready line."""


class _SupervisorCollector(Collector):
    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        yield CounterMetricFamily(
            "syncwire_worker_restarts",
            "Workers restarted after they exited unasked",
            value=self._supervisor.restarts,
        )
        yield GaugeMetricFamily(
            "syncwire_workers", "Worker processes running", value=self._supervisor.running
        )


class Supervisor:
    """Starts, watches, restarts and stops the workers of one host."""

    def __init__(self, config: ServerConfig, prog: str = "syncwire-server") -> None:
        self.config = config
        self.prog = prog  # names the command in the one-line errors
        self.restarts = 0
        self._workers = [_Worker(index) for index in range(config.workers)]
        self._stopping = asyncio.Event()
        self._metrics_dir = ""
        self._worker_config = config

    @property
    def running(self) -> int:
        """How many worker processes are running now."""
        return sum(1 for w in self._workers if w.process and w.process.returncode is None)

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers (for operators and tests)."""
        return [w.process.pid for w in self._workers if w.process and w.process.returncode is None]

    async def run(self) -> int:
        """Runs until SIGTERM/SIGINT; returns the exit code."""
        config = self.config
        held = _hold_ports(config)
        self._worker_config = config.per_worker(*(sock.getsockname()[1] for sock in held))
        self._metrics_dir = tempfile.mkdtemp(prefix="syncwire-metrics-")
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        http = None
        try:
            try:
                lines = await asyncio.gather(*(self._start(w) for w in self._workers))
            except WorkerFailed as exc:
                print(f"{self.prog}: {exc}", file=sys.stderr, flush=True)
                return exc.code
            ready = f"{lines[0]} workers={config.workers}"
            if config.metrics_port >= 0:
                registry = CollectorRegistry()
                multiprocess.MultiProcessCollector(registry, path=self._metrics_dir)  # type: ignore[no-untyped-call]
                registry.register(_SupervisorCollector(self))
                http, _ = start_http_server(config.metrics_port, addr=config.host, registry=registry)
                ready += f" metrics=http://{config.host}:{http.server_port}/metrics"
            print(ready, flush=True)
            watchers = [asyncio.create_task(self._watch(w)) for w in self._workers]
            await self._stopping.wait()
            for task in watchers:
                task.cancel()
            log.warning("shutting down %d workers (grace %.1f s)", self.running, config.shutdown_grace)
            return 0
        finally:
            self._stopping.set()
            await self._stop_all()
            if http is not None:
                http.shutdown()
                http.server_close()
            for sock in held:
                sock.close()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            print("syncwire stopped", file=sys.stderr, flush=True)

    # ----------------------------------------------------------------- workers

    async def _start(self, worker: _Worker) -> str:
        """Spawns the worker and waits for its ready line (raises WorkerFailed)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, MULTIPROCESS: self._metrics_dir},
        )
        worker.process = process
        worker.started_at = asyncio.get_running_loop().time()
        assert process.stdin is not None and process.stdout is not None
        # The pipe stays open: the worker stops when it closes (supervisor gone).
        order = {"config": dataclasses.asdict(self._worker_config), "uvloop": _on_uvloop()}
        process.stdin.write(json.dumps(order).encode() + b"\n")
        line = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            await process.stdin.drain()
            async with asyncio.timeout(READY_TIMEOUT):
                line = await process.stdout.readline()
        if not line.startswith(READY_PREFIX):
            _signal(process, signal.SIGKILL)
            code = await process.wait()
            self._forget(process)
            raise WorkerFailed(worker.index, code if code > 0 else 1, line)
        worker.output = asyncio.create_task(_discard(process.stdout))
        log.info("worker %d serving (pid %d)", worker.index, process.pid)
        return line.decode().strip()

    async def _watch(self, worker: _Worker) -> None:
        """Restarts the worker whenever it exits unasked."""
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            assert worker.process is not None
            code = await worker.process.wait()
            self._forget(worker.process)
            if self._stopping.is_set():
                return
            lived = loop.time() - worker.started_at
            worker.failures = 1 if lived >= STABLE_SECONDS else worker.failures + 1
            delay = min(RESTART_CAP, RESTART_BASE * 2 ** (worker.failures - 1))
            log.warning(
                "worker %d (pid %d) exited with %s after %.1f s; restarting in %.2f s",
                worker.index, worker.process.pid, _describe(code), lived, delay,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            self.restarts += 1
            try:
                await self._start(worker)
            except WorkerFailed as exc:  # said here; the loop sees it exited and retries
                log.warning("restarting worker %d failed: %s", worker.index, exc)

    async def _stop_all(self) -> None:
        """SIGTERM to every worker; SIGKILL to those still running past the grace."""
        processes = [w.process for w in self._workers if w.process is not None]
        for process in processes:
            _signal(process, signal.SIGTERM)
        deadline = self.config.shutdown_grace + KILL_MARGIN
        for process in processes:
            try:
                async with asyncio.timeout(deadline):
                    await process.wait()
            except TimeoutError:
                log.warning("worker pid %d did not drain in time; killing it", process.pid)
                _signal(process, signal.SIGKILL)
                await process.wait()
            self._forget(process)

    def _forget(self, process: asyncio.subprocess.Process) -> None:
        """Lets the live-worker gauges drop an exited worker's values."""
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(process.pid, self._metrics_dir)  # type: ignore[no-untyped-call]


def _hold_ports(config: ServerConfig) -> list[socket.socket]:
    """Reserves the gRPC and WebSocket ports for the workers (port 0 resolved here);
    raises OSError naming the port that cannot be had."""
    held: list[socket.socket] = []
    try:
        for name, port in (("gRPC", config.grpc_port), ("WebSocket", config.ws_port)):
            address = f"{config.host}:{port}"
            try:
                held.append(reserve(address))
            except OSError as exc:
                raise OSError(f"cannot bind {name} port {address}: {os_error_reason(exc)}") from None
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return held


async def _discard(stream: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError):
        while await stream.read(4096):
            pass


def _on_uvloop() -> bool:
    """Whether this process runs on uvloop (its workers then do too)."""
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


def _signal(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
    """Sends `signum` to a worker that asyncio has not seen exit.

    Not `Process.kill()`/`send_signal()`: those go through `subprocess.Popen.poll()`,
    which reaps a child that has just exited before asyncio's child watcher does, and the
    watcher then reports exit code 255 instead of the real one. `os.kill` on an exited but
    not yet reaped child is harmless (its pid stays reserved until the watcher reaps it).
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return f"exit code {code}"


def supervise(config: ServerConfig, prog: str = "syncwire-server") -> int:
    """Runs `config.workers` workers until SIGTERM/SIGINT; returns the exit code. `prog`
    (the command the user ran, e.g. "syncwire serve") prefixes the one-line errors."""
    try:
        return asyncio.run(Supervisor(config, prog).run())
    except OSError as exc:  # the ports cannot be held
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


__all__ = ["Supervisor", "WorkerFailed", "supervise"]
