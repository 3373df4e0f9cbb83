"""`python -m server --workers N`: N processes sharing the ports over one real Redis.

A worker SIGKILLed mid-stream is restarted; its clients reconnect through the shared
port and recover with nothing lost or doubled; its peers' presence expires within the
documented lifetime; host-wide connection limits stay host-wide; metrics aggregate over
workers; SIGTERM drains every worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from client import Recovery, SyncClient
from server.config import ConfigError, ServerConfig
from syncwire.v1 import sync_pb2_grpc

from .fault_harness import (
    IDLE_TIMEOUT,
    PATIENT,
    SERVER_ARGS,
    Publisher,
    Tail,
    check_delivery,
    close_tails,
    open_tail,
    presence_is,
    wait_delivered,
    wait_until,
)
from .process_harness import ServerProcess, start_server_process
from .redis_harness import RedisServer, redis_server, with_key_prefix  # noqa: F401
from .service_harness import SyncStream

pytestmark = pytest.mark.timeout(90)



def children(pid: int) -> set[int]:
    """Process ids of `pid`'s children (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in text.splitlines())
        if name and not name.startswith("#")
    }


@pytest.fixture
async def workers(redis_server: RedisServer) -> AsyncIterator[ServerProcess]:  # noqa: F811
    url = with_key_prefix(redis_server.url(), f"w{uuid.uuid4().hex[:8]}")
    supervisor = await start_server_process(
        "--workers", "2", "--broker", url, "--metrics-port", "0",
        *SERVER_ARGS,
        "--shutdown-grace", "1",
    )
    try:
        yield supervisor
    finally:
        supervisor.kill()  # the workers follow when their stdin pipe closes
        await supervisor.process.wait()


async def test_killed_worker_is_restarted_and_its_clients_lose_nothing(
    workers: ServerProcess,
) -> None:
    ready = workers.ready_line
    assert " workers=2 " in ready
    endpoint = f"grpc://{workers.grpc_address}"
    pids = children(workers.process.pid)
    assert len(pids) == 2

    tails: list[Tail] = []
    publisher = Publisher(SyncClient(endpoint, PATIENT), "doc")
    try:
        # The kernel spreads connections over both workers (SO_REUSEPORT).
        while len({tail.server_id for tail in tails}) < 2 or len(tails) < 4:
            assert len(tails) < 40, "every connection went to one worker"
            tails.append(await open_tail(endpoint, "doc"))
        await publisher.client.connect()
        await publisher.publish(10, "before")

        done = asyncio.Event()
        stream = asyncio.create_task(publisher.publish_until(done, "during"))
        await publisher.publish(5, "before-kill")
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)  # mid-stream: the publisher keeps going
        # The supervisor starts a replacement on the same ports.
        await wait_until(
            lambda: len(children(workers.process.pid) - {victim}) == 2,
            "a replacement worker was started",
            30,
        )
        # Both workers had clients, so some were on the killed one: they come back.
        await wait_until(
            lambda: any(r.recovery == Recovery.RECOVERED for t in tails for r in t.recoveries),
            "the killed worker's clients resubscribed",
            30,
        )
        await publisher.publish(10, "after")
        done.set()
        await stream
        await wait_delivered(tails, publisher.acked)
        for tail in tails:
            check_delivery(tail, publisher.acked)
            assert not tail.losses  # one Redis: nothing may be lost at all

        # The killed worker's peers expire; everyone alive is present, once.
        alive = {tail.client.peer_id for tail in tails}
        took = await wait_until(
            lambda: presence_is(publisher.client, "doc", alive), "presence settled", 10
        )
        assert took < IDLE_TIMEOUT + 3.0

        url = ready.rsplit("metrics=", 1)[1]
        metrics = scrape(url)
        assert metrics["syncwire_worker_restarts_total"] == 1
        assert metrics["syncwire_workers"] == 2
        assert metrics["syncwire_deltas_published_total"] >= 10  # dead workers' counts kept
        # Sessions summed over the live workers only (the killed one's are gone).
        sessions = len(tails) + 1  # every tail and the publisher hold one Sync stream
        connections = 'syncwire_connections{transport="grpc"}'

        async def counted() -> bool:
            return (await asyncio.to_thread(scrape, url)).get(connections) == sessions

        await wait_until(
            counted,
            "the connection gauge counts the live sessions",
            10,
        )
    finally:
        await close_tails(tails)
        await publisher.client.close(flush_timeout=0)

    workers_now = children(workers.process.pid)
    assert await workers.terminate(timeout=20) == 0
    assert all(gone(pid) for pid in workers_now)



def test_more_workers_need_a_shared_broker_and_room_for_the_limits() -> None:
    with pytest.raises(ConfigError, match="shared broker"):
        ServerConfig(workers=2)
    redis = "redis://127.0.0.1:6379/0"
    with pytest.raises(ConfigError, match="max_connections"):
        ServerConfig(workers=4, broker=redis, max_connections=3)
    with pytest.raises(ConfigError, match="max_connections_per_address"):
        ServerConfig(workers=4, broker=redis, max_connections_per_address=3)
    with pytest.raises(ConfigError, match="workers"):
        ServerConfig(workers=0)


def test_host_wide_limits_are_split_among_workers() -> None:
    config = ServerConfig(
        workers=3, broker="redis://127.0.0.1:6379/0", max_connections=1000,
        max_connections_per_address=100, metrics_port=9100, rate_limit_messages=50.0,
    )
    worker = config.per_worker(50051, 8080)
    assert (worker.max_connections, worker.max_connections_per_address) == (333, 33)
    assert worker.max_connections * 3 <= 1000 and worker.max_connections_per_address * 3 <= 100
    assert (worker.workers, worker.metrics_port, worker.rate_limit_messages) == (1, -1, 50.0)
    assert (worker.grpc_port, worker.ws_port) == (50051, 8080)
    unlimited = ServerConfig(
        workers=3, broker="redis://127.0.0.1:6379/0", max_connections_per_address=0
    )
    assert unlimited.per_worker(1, 2).max_connections_per_address == 0


async def test_workers_with_memory_broker_stop_at_start_with_a_clear_error() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "--workers", "2", "--grpc-port", "0", "--ws-port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode == 2 and not out
    assert "shared broker" in err.decode()


async def test_connection_limit_is_host_wide(redis_server: RedisServer) -> None:  # noqa: F811
    """--max-connections 2 with two workers: at most 2 sessions on the host, not 4."""
    url = with_key_prefix(redis_server.url(), f"w{uuid.uuid4().hex[:8]}")
    supervisor = await start_server_process(
        "--workers", "2", "--broker", url, "--max-connections", "2"
    )
    channels: list[grpc.aio.Channel] = []
    try:
        accepted = 0
        for _ in range(8):  # separate TCP connections: the kernel spreads them
            channel = grpc.aio.insecure_channel(
                supervisor.grpc_address, options=[("grpc.use_local_subchannel_pool", 1)]
            )
            channels.append(channel)
            stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
            try:
                await stream.welcome()
                accepted += 1
            except AssertionError:
                ended = await stream.ended
                assert ended is not None
                assert ended.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert 1 <= accepted <= 2
    finally:
        for channel in channels:
            await channel.close(None)
        assert await supervisor.terminate(timeout=20) == 0
    assert supervisor.process.stderr is not None
    notices = (await supervisor.process.stderr.read()).decode()
    # One shutdown notice and one "stopped" line for the host, not one per worker.
    assert notices.count("syncwire stopped") == 1, notices
    assert notices.count("shutting down") == 1, notices


@pytest.mark.parametrize(
    ("command", "prog"),
    [(["-m", "server"], "syncwire-server"), (["-m", "client.cli", "serve"], "syncwire serve")],
)
async def test_a_port_in_use_stops_the_supervisor_with_one_line(
    command: list[str], prog: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, *command, "--workers", "2", "--broker", "redis://127.0.0.1:1/0",
            "--grpc-port", str(port), "--ws-port", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    assert process.returncode == 1 and not out
    # Named after the command the user ran.
    assert err.decode().splitlines()[-1] == (
        f"{prog}: cannot bind gRPC port 127.0.0.1:{port}: address already in use"
    )


async def test_a_failed_restart_says_why(
    redis_server: RedisServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A worker whose replacement cannot start (its hooks module now fails to import):
    the supervisor says the restart failed and why, then keeps retrying."""
    broken = tmp_path / "broken"
    (tmp_path / "flaky_hooks.py").write_text(
        "import pathlib\n"
        "from server.hooks import Hooks\n"
        f"if pathlib.Path({str(broken)!r}).exists():\n"
        "    raise RuntimeError('hooks broken on purpose')\n"
        "hooks = Hooks()\n"
    )
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    url = with_key_prefix(redis_server.url(), f"w{uuid.uuid4().hex[:8]}")
    supervisor = await start_server_process(
        "--workers", "2", "--broker", url, "--hooks", "flaky_hooks:hooks",
        *SERVER_ARGS,
        "--shutdown-grace", "1",
        env={"PYTHONPATH": path},
    )
    try:
        broken.touch()
        os.kill(min(children(supervisor.process.pid)), signal.SIGKILL)
        assert supervisor.process.stderr is not None
        said = ""
        async with asyncio.timeout(30):
            while "restarting worker" not in said:
                said = (await supervisor.process.stderr.readline()).decode()
                assert said, "the supervisor's stderr ended"
        assert "did not start (exit code 2)" in said, said  # 2: configuration refused
    finally:
        supervisor.kill()
        await supervisor.process.wait()
