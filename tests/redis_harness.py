"""A real redis-server for tests: the shared one named by SYNCWIRE_TEST_REDIS_URL, or a
private one on a free loopback port, without persistence, stopped by pid afterwards.

Each test gets its own key prefix (`?key_prefix=` in the URL; channels are not per
database), so tests never see each other's keys or events.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REDIS_URL_ENV = "SYNCWIRE_TEST_REDIS_URL"
MISSING_BINARY = (
    "redis-server is not installed, but the Redis broker tests need a real one: "
    "install it (Debian/Ubuntu: apt-get install -y redis-server) or set "
    f"{REDIS_URL_ENV}=redis://HOST:PORT/DB to use a running server"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING on the loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a fixed loopback port; can be killed and restarted
    on the same port (a restart without persistence loses every key)."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        options: Sequence[str] = (),
        config_file: Path | None = None,
    ) -> None:
        """`options`: extra command-line options (e.g. `--replicaof`, `--cluster-enabled`);
        `config_file`: a configuration file to start from (Sentinel needs one)."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(MISSING_BINARY, pytrace=False)
        self._binary = binary
        self._directory = directory
        self._config_file = config_file
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.options: list[str] = list(options)
        """Extra redis-server arguments for the next start (e.g. to turn AOF on)."""

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10.0) -> None:
        argv = [self._binary]
        if self._config_file is not None:
            argv.append(str(self._config_file))
        argv += ["--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self._directory)]
        argv += self.options
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self._directory
        )
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server exited ({self.process.returncode}): {error}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING within {timeout} s")
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL by pid and wait: like a crash, nothing is saved."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=10)
            if self.process.stderr is not None:
                self.process.stderr.close()
        self.process = None


@contextlib.contextmanager
def private_redis(directory: Path) -> Iterator[RedisServer]:
    """A redis-server only this test talks to (so it may kill and restart it)."""
    server = RedisServer(directory)
    for attempt in range(3):  # the free port may be taken between probe and bind
        try:
            server.start()
            break
        except RuntimeError:
            if attempt == 2:
                raise
            server.port = free_port()
    try:
        yield server
    finally:
        server.kill()


def with_key_prefix(url: str, prefix: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}key_prefix={prefix}"


@pytest.fixture(scope="session")
def redis_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Redis: SYNCWIRE_TEST_REDIS_URL, or a private server."""
    shared = os.environ.get(REDIS_URL_ENV)
    if shared:
        yield shared
        return
    with private_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url()


@pytest.fixture
def redis_url(redis_base_url: str) -> str:
    """A Redis URL with a key prefix of its own: this test's keys and channels only."""
    return with_key_prefix(redis_base_url, f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server this test controls (kill, restart on the same port)."""
    with private_redis(tmp_path) as server:
        yield server
