"""mypy --strict accepts the WebSocket channel and server wherever grpc.aio's are expected,
and still rejects misuse through them."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from mypy import api as mypy_api

GOOD = """
from typing import assert_type

import grpc

from client.inprocess import InProcessChannel
from client.ws_channel import WebSocketChannel
from server.ws import WebSocketServer
from syncwire.v1 import sync_pb2, sync_pb2_grpc


def takes_channel(channel: grpc.aio.Channel) -> None: ...


def takes_server(server: grpc.aio.Server) -> None: ...


async def use(servicer: sync_pb2_grpc.SyncServiceServicer) -> None:
    channel = WebSocketChannel("ws://127.0.0.1:1", headers={"authorization": "Bearer t"})
    takes_channel(channel)
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    assert_type(stub, sync_pb2_grpc.SyncServiceAsyncStub)
    response = await stub.Publish(sync_pb2.PublishRequest(), timeout=1.0, metadata=(("k", "v"),))
    assert_type(response, sync_pb2.PublishResponse)
    async for message in stub.Sync(None):
        assert_type(message, sync_pb2.SyncResponse)
    server = WebSocketServer(max_message_bytes=1 << 20)
    takes_server(server)
    sync_pb2_grpc.add_SyncServiceServicer_to_server(servicer, server)
    port: int = server.add_insecure_port("127.0.0.1:0")
    takes_channel(InProcessChannel(server))
    await channel.close(grace=None)
"""

BAD = """
from client.ws_channel import WebSocketChannel
from syncwire.v1 import sync_pb2, sync_pb2_grpc


async def misuse() -> None:
    stub = sync_pb2_grpc.SyncServiceStub(WebSocketChannel("ws://127.0.0.1:1"))
    await stub.Publish(sync_pb2.GetPresenceRequest())
    await stub.Subscribe(sync_pb2.PublishRequest())
"""


@pytest.mark.timeout(120)
def test_mypy_accepts_websocket_channel_as_grpc_aio_channel_and_rejects_misuse(
    repo_root: Path, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good_ws.py", tmp_path / "bad_ws.py"
    good.write_text(GOOD)
    bad.write_text(BAD)
    with contextlib.chdir(repo_root):
        stdout, stderr, status = mypy_api.run(
            ["--config-file", str(repo_root / "pyproject.toml"), "--no-pretty", str(good), str(bad)]
        )
    assert status == 1, stderr + stdout
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert not [line for line in errors if "good_ws.py" in line], stdout
    assert len(errors) == 2, stdout
    assert 'incompatible type "GetPresenceRequest"; expected "PublishRequest"' in errors[0]
    assert 'has no attribute "Subscribe"' in errors[1]
