"""examples/greeter (docs/your-own-service.md) runs as documented: its own service over
native gRPC and over WebSocket, alone and next to SyncService."""

from __future__ import annotations

import asyncio

from examples.greeter.client import greet
from tests.process_harness import run_python, start_server_process

GREETINGS = [
    "Hello, world!",
    "Hello, world!",
    "Bonjour, world!",
    "Hallo, world!",
    "Hello, Ada!",
    "Hello, Grace!",
    "INVALID_ARGUMENT: name is required",
]


async def test_python_m_examples_greeter_prints_the_same_for_both_transports() -> None:
    finished = await run_python("-m", "examples.greeter")
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines() == [
        f"{transport}: {line}" for transport in ("grpc", "ws") for line in GREETINGS
    ]


async def test_greeter_next_to_sync_service_with_syncwire_serve_services() -> None:
    process = await start_server_process("--services", "examples.greeter.service:add_services")
    try:
        async with asyncio.timeout(60):
            assert await greet(process.grpc_address, "world") == GREETINGS
            assert await greet(process.ws_url, "world") == GREETINGS
        assert await process.terminate() == 0
    finally:
        process.kill()
