"""A WebSocket channel whose connection drops leaves no background task behind; a
connect started in the background (``get_state(try_to_connect=True)``) reports how it
ended and is cancelled by ``close()``."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import grpc
import pytest
from websockets.exceptions import ConnectionClosed

from client.ws_channel import WebSocketChannel
from syncwire.v1 import sync_pb2, sync_pb2_grpc
from wire.transport import MessageTransport

from .fault_harness import wait_until
from .service_harness import running_server

pytestmark = pytest.mark.timeout(30)


def _channel_tasks() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("ws-client-") and not task.done()
    ]


async def test_dropped_connection_stops_reader_and_writer() -> None:
    async with running_server() as server:
        channel = WebSocketChannel(server.ws_url)
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        await stub.GetServerInfo(sync_pb2.GetServerInfoRequest())
        tasks = _channel_tasks()
        assert len(tasks) == 2
        for connection in server.ws_server.connections:
            await connection.shutdown(1011, "dropped by test")  # the server drops it
        _, pending = await asyncio.wait(tasks, timeout=5)
        assert pending == set(), [t.get_name() for t in pending]
        # The channel is still usable: the next call opens a new connection.
        await stub.GetServerInfo(sync_pb2.GetServerInfoRequest())
        await channel.close()
    for _ in range(100):
        if not _channel_tasks():
            break
        await asyncio.sleep(0.01)
    assert _channel_tasks() == []


# ------------------------------------------------- connects started by get_state(True)

CHANNEL_LOGGER = "client._ws_channel_base"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _BrokenTransportChannel(WebSocketChannel):
    """A channel whose transport code has a bug: opening raises a non-network error."""

    async def _open_transport(self) -> tuple[MessageTransport, int | None]:
        raise RuntimeError("bug while opening the transport")


async def test_background_connect_to_an_unreachable_server_is_logged_not_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=CHANNEL_LOGGER)
    channel = WebSocketChannel(f"ws://127.0.0.1:{_closed_port()}")
    try:
        channel.get_state(try_to_connect=True)
        await wait_until(
            lambda: any("failed" in r.getMessage() for r in caplog.records), "logged", 20
        )
        assert channel.get_state() is grpc.ChannelConnectivity.TRANSIENT_FAILURE
        [record] = [r for r in caplog.records if r.name == CHANNEL_LOGGER]
        assert record.levelno == logging.DEBUG
        assert "ConnectionRefusedError" in record.getMessage()
    finally:
        await channel.close()


async def test_a_fault_in_a_background_connect_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=CHANNEL_LOGGER)
    channel = _BrokenTransportChannel("ws://127.0.0.1:1")
    try:
        channel.get_state(try_to_connect=True)
        await wait_until(
            lambda: any(r.name == CHANNEL_LOGGER for r in caplog.records), "logged", 20
        )
        [record] = [r for r in caplog.records if r.name == CHANNEL_LOGGER]
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)
    finally:
        await channel.close()


async def test_close_cancels_a_background_connect_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that accepts TCP but never answers the handshake: closing the channel
    cancels the pending connect (the server sees the socket close), the channel stays
    SHUTDOWN and nothing is logged as a failure."""
    caplog.set_level(logging.DEBUG, logger=CHANNEL_LOGGER)
    accepted: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(reader)

    listener = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    channel = WebSocketChannel(f"ws://127.0.0.1:{port}", open_timeout=60)
    try:
        channel.get_state(try_to_connect=True)
        reader = await accepted.get()
        await channel.close()
        await asyncio.wait_for(reader.read(), 10)  # EOF: the client dropped the socket
        await wait_until(lambda: not channel._connecting, "the cancelled connect ended", 20)
        assert channel.get_state() is grpc.ChannelConnectivity.SHUTDOWN
        assert [r for r in caplog.records if r.name == CHANNEL_LOGGER] == []
    finally:
        listener.close()
        await listener.wait_closed()


async def test_channel_ready_raises_a_fault_instead_of_retrying_it_forever() -> None:
    channel = _BrokenTransportChannel("ws://127.0.0.1:1")
    try:
        with pytest.raises(RuntimeError, match="bug while opening"):
            await asyncio.wait_for(channel.channel_ready(), 20)
        # A wait_for_ready call on it ends (UNAVAILABLE, naming the fault) instead of hanging.
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.GetServerInfo(sync_pb2.GetServerInfoRequest(), wait_for_ready=True)
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "bug while opening" in (failed.value.details() or "")
    finally:
        await channel.close()


async def test_channel_ready_keeps_retrying_an_unreachable_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=CHANNEL_LOGGER)
    channel = WebSocketChannel(f"ws://127.0.0.1:{_closed_port()}")
    ready = asyncio.create_task(channel.channel_ready())
    try:
        await wait_until(lambda: len(caplog.records) >= 2, "two failed attempts logged", 20)
        assert not ready.done()
        assert all(r.levelno == logging.DEBUG for r in caplog.records)
    finally:
        ready.cancel()
        await channel.close()


class _FaultyTransport:
    """A transport whose close has a bug. Receiving has one too (``receive_fails``), or
    waits, as for a peer that never answers, until the transport is closed."""

    def __init__(self, receive_fails: bool) -> None:
        self._receive_fails = receive_fails
        self._closed = asyncio.Event()

    async def recv(self) -> bytes | str:
        if self._receive_fails:
            raise RuntimeError("bug while receiving")
        await self._closed.wait()
        raise ConnectionClosed(None, None)

    async def send(self, message: bytes) -> None:
        pass

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._closed.set()
        raise RuntimeError("bug while closing")


class _FaultyTransportChannel(WebSocketChannel):
    def __init__(self, receive_fails: bool, **options: Any) -> None:
        super().__init__("ws://127.0.0.1:1", **options)
        self._receive_fails = receive_fails

    async def _open_transport(self) -> tuple[MessageTransport, int | None]:
        return _FaultyTransport(self._receive_fails), None


async def _failed_close_is_logged(
    channel: WebSocketChannel, caplog: pytest.LogCaptureFixture, details: str
) -> list[logging.LogRecord]:
    """Makes a call that ends UNAVAILABLE (with ``details``) as the connection fails;
    checks that the failing close was logged last (WARNING, with its traceback) and
    returns the connection's log records."""
    caplog.set_level(logging.DEBUG, logger="wire.connection")
    try:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.GetServerInfo(sync_pb2.GetServerInfoRequest(), timeout=20)
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
        assert details in (failed.value.details() or "")
        await wait_until(
            lambda: any(r.levelno == logging.WARNING for r in caplog.records), "logged", 20
        )
    finally:
        await channel.close()
    records = [r for r in caplog.records if r.name == "wire.connection"]
    closing = records[-1]
    assert closing.levelno == logging.WARNING and closing.exc_info is not None
    assert "bug while closing" in str(closing.exc_info[1])
    return records


async def test_a_failing_close_after_a_reader_fault_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = _FaultyTransportChannel(receive_fails=True)
    [reader, _closing] = await _failed_close_is_logged(channel, caplog, "bug while receiving")
    assert reader.levelno == logging.ERROR and reader.exc_info is not None


async def test_a_failing_close_after_a_keepalive_timeout_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = _FaultyTransportChannel(
        receive_fails=False, app_ping=True, ping_interval=0.05, ping_timeout=0.05
    )
    records = await _failed_close_is_logged(channel, caplog, "keepalive")
    assert len(records) == 1
