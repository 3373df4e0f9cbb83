"""`python -m tests.interop.server` serves the gRPC interop TestService on both ports
(the web package's Node and browser interop runs start it this way)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import grpc
import grpc.aio
import pytest
from src.proto.grpc.testing import empty_pb2, messages_pb2, test_pb2_grpc

from client.ws_channel import WebSocketChannel

READY = re.compile(r"^interop ready grpc=(?P<grpc>\S+) ws=(?P<ws>\S+)$")


async def test_interop_server_process_serves_both_ports() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.interop.server",
        "--allowed-origins",
        "https://a.example, https://*.b.example",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode().strip()
        match = READY.match(line)
        assert match, line
        channels: list[grpc.aio.Channel] = [
            grpc.aio.insecure_channel(match["grpc"]),
            WebSocketChannel(match["ws"]),
        ]
        for channel in channels:
            async with channel:
                stub = test_pb2_grpc.TestServiceStub(channel)
                assert await stub.EmptyCall(empty_pb2.Empty(), timeout=10) == empty_pb2.Empty()
                response = await stub.UnaryCall(
                    messages_pb2.SimpleRequest(response_size=7), timeout=10
                )
                assert response.payload.body == b"\x00" * 7
        # --allowed-origins takes the server's patterns: listed pages connect, others not.
        for origin, allowed in (("https://x.b.example", True), ("https://evil.example", False)):
            async with WebSocketChannel(match["ws"], headers={"origin": origin}) as page:
                call = test_pb2_grpc.TestServiceStub(page).EmptyCall(empty_pb2.Empty(), timeout=10)
                if allowed:
                    assert await call == empty_pb2.Empty()
                else:
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await call
                    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                    assert "origin not allowed" in (refused.value.details() or "")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
