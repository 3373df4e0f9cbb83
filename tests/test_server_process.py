"""The server as operators run it: a process with a run contract and graceful shutdown."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import grpc
import pytest

from syncwire.v1 import sync_pb2_grpc

from .process_harness import start_server_process
from .service_harness import SyncStream

pytestmark = pytest.mark.timeout(60)


async def test_sigterm_drains_and_exits_zero() -> None:
    server = await start_server_process("--shutdown-grace", "3")
    try:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            streams = [SyncStream(stub) for _ in range(3)]
            for stream in streams:
                await stream.welcome()
                await stream.subscribe("doc")
            started = time.monotonic()
            exit_code = await server.terminate(timeout=10)
            elapsed = time.monotonic() - started
            assert exit_code == 0
            assert elapsed < 3 + 2
            for stream in streams:
                goodbye = await stream.expect("disconnect")
                assert goodbye.disconnect.reason == "server shutting down"
                assert goodbye.disconnect.reconnect
                error = await stream.ended
                assert error is not None
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                assert error.details() == "server shutting down"
    finally:
        server.kill()


def test_bad_configuration_exits_2_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "--heartbeat-interval", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "syncwire-server: invalid heartbeat_interval = -1.0: must be > 0"
    )


def test_help_lists_every_option() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server", "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    for flag in ("--grpc-port", "--ws-port", "--broker", "--idle-timeout", "--metrics-port"):
        assert flag in result.stdout
    assert "SYNCWIRE_GRPC_PORT" in result.stdout


async def test_port_in_use_is_a_clear_error() -> None:
    first = await start_server_process()
    try:
        port = first.grpc_address.rsplit(":", 1)[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", "--grpc-port", port, "--ws-port", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 1
        assert "cannot bind gRPC port" in err.decode()
    finally:
        await first.terminate()
