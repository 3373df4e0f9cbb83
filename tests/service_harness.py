"""Test harness: real servers on ephemeral loopback ports and a typed stream driver.

`running_server` starts a full SyncwireServer in this process; `transport` fixtures pick
how tests reach it (native gRPC, WebSocket framing), so one test body covers both.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from server.app import SyncwireServer
from server.config import ServerConfig
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

TRANSPORTS = ["grpc", "ws"]


def test_config(**overrides: Any) -> ServerConfig:
    """A config with ephemeral ports and short timers, suitable for tests.

    The broker operation timeout is long (10 s, not the 2 s default): on a busy machine a
    healthy Redis call can take seconds, and only the outage tests, which set their own,
    are about that bound."""
    base = ServerConfig(
        host="127.0.0.1", grpc_port=0, ws_port=0, shutdown_grace=2.0, broker_timeout=10.0
    )
    return dataclasses.replace(base, **overrides)


@contextlib.asynccontextmanager
async def running_server(**overrides: Any) -> AsyncIterator[SyncwireServer]:
    server = SyncwireServer(test_config(**overrides))
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=1.0)


async def poll_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Waits until `condition()` holds, for server state that exposes no event to wait
    on; fails naming `what` after `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():  # noqa: ASYNC110 - no event exists for these conditions
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


def open_channel(server: SyncwireServer, transport: str) -> grpc.aio.Channel:
    """A channel to `server` over `transport` ("grpc" or "ws")."""
    if transport == "grpc":
        return grpc.aio.insecure_channel(server.grpc_address)
    if transport == "ws":
        ws_channel = pytest.importorskip("client.ws_channel")
        channel: grpc.aio.Channel = ws_channel.WebSocketChannel(server.ws_url)
        return channel
    raise ValueError(transport)


@contextlib.asynccontextmanager
async def stream_on(server: SyncwireServer, transport: str) -> AsyncIterator[SyncStream]:
    """A Sync stream to `server` over `transport` ("grpc" or "ws"), past its Welcome."""
    async with open_channel(server, transport) as channel:
        stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
        try:
            await stream.welcome()
            yield stream
        finally:
            await stream.close()


EXPECT_TIMEOUT = 60.0
"""Seconds SyncStream.expect waits: far past any healthy answer on a busy machine."""


class SyncStream:
    """Drives one Sync stream: send requests, await responses of a given kind."""

    def __init__(self, stub: sync_pb2_grpc.SyncServiceAsyncStub, **call_kwargs: Any) -> None:
        self._requests: asyncio.Queue[sync_pb2.SyncRequest | None] = asyncio.Queue()
        self.call = stub.Sync(self._iterate(), **call_kwargs)
        self.received: list[sync_pb2.SyncResponse] = []
        self._next_request_id = 0
        self._inbox: list[sync_pb2.SyncResponse] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        self.peer_id = ""
        self.ended: asyncio.Future[grpc.aio.AioRpcError | None] = (
            asyncio.get_running_loop().create_future()
        )

    async def _iterate(self) -> AsyncIterator[sync_pb2.SyncRequest]:
        while True:
            request = await self._requests.get()
            if request is None:
                return
            yield request

    async def _read(self) -> None:
        try:
            async for response in self.call:
                self.received.append(response)
                self._inbox.append(response)
                self._arrived.set()
            self.ended.set_result(None)
        except grpc.aio.AioRpcError as error:
            self.ended.set_result(error)
        except asyncio.CancelledError:
            if not self.ended.done():
                self.ended.cancel()

    async def welcome(self) -> types_pb2.Welcome:
        response = await self.expect("welcome")
        self.peer_id = response.welcome.peer_id
        return response.welcome

    def send(self, **kind: Any) -> int:
        self._next_request_id += 1
        self._requests.put_nowait(sync_pb2.SyncRequest(request_id=self._next_request_id, **kind))
        return self._next_request_id

    def half_close(self) -> None:
        self._requests.put_nowait(None)

    async def expect(
        self, kind: str, predicate: Callable[[sync_pb2.SyncResponse], bool] | None = None
    ) -> sync_pb2.SyncResponse:
        """Takes the oldest unconsumed response of `kind` ("" = any) that satisfies
        `predicate`, waiting for it (at most EXPECT_TIMEOUT seconds, then fails naming
        what did arrive); responses that do not match stay for later."""
        try:
            async with asyncio.timeout(EXPECT_TIMEOUT):
                return await self._expect(kind, predicate)
        except TimeoutError:
            kinds = [r.WhichOneof("kind") for r in self._inbox]
            raise AssertionError(
                f"no {kind or 'response'!r} within {EXPECT_TIMEOUT} s; unconsumed: {kinds}"
            ) from None

    async def _expect(
        self, kind: str, predicate: Callable[[sync_pb2.SyncResponse], bool] | None
    ) -> sync_pb2.SyncResponse:
        while True:
            for index, response in enumerate(self._inbox):
                if (not kind or response.WhichOneof("kind") == kind) and (
                    predicate is None or predicate(response)
                ):
                    del self._inbox[index]
                    return response
            if self.ended.done():
                raise AssertionError(
                    f"stream ended while waiting for {kind!r}: {self.ended.result()}"
                )
            self._arrived.clear()
            arrived: asyncio.Future[object] = asyncio.ensure_future(self._arrived.wait())
            ended: asyncio.Future[object] = self.ended  # type: ignore[assignment]
            await asyncio.wait({arrived, ended}, return_when=asyncio.FIRST_COMPLETED)
            arrived.cancel()

    async def subscribe(
        self,
        collection_id: str,
        *,
        last_offset: int | None = None,
        epoch: str = "",
        join_presence: bool = False,
        user_info: types_pb2.UserInfo | None = None,
    ) -> sync_pb2.Subscribed:
        subscribe = sync_pb2.Subscribe(
            collection_id=collection_id, epoch=epoch, join_presence=join_presence
        )
        if last_offset is not None:
            subscribe.last_offset = last_offset
        if user_info is not None:
            subscribe.user_info.CopyFrom(user_info)
        request_id = self.send(subscribe=subscribe)
        response = await self.expect_reply(request_id)
        if response.HasField("error"):
            raise AssertionError(f"subscribe failed: {response.error}")
        return response.subscribed

    async def expect_any(self) -> sync_pb2.SyncResponse:
        return await self.expect("")

    async def expect_reply(self, request_id: int) -> sync_pb2.SyncResponse:
        """The direct reply (answer or error) to request `request_id`."""
        return await self.expect("", lambda r: r.request_id == request_id)

    async def publish(self, collection_id: str, data: bytes, **fields: Any) -> sync_pb2.PublishAck:
        request_id = self.send(
            publish=sync_pb2.Publish(
                delta=types_pb2.Delta(
                    collection_id=collection_id,
                    crdt_type=types_pb2.CRDT_TYPE_RGA,
                    delta=data,
                    **fields,
                )
            )
        )
        response = await self.expect_reply(request_id)
        if response.WhichOneof("kind") != "publish_ack":
            raise AssertionError(f"publish {request_id} was answered with {response}")
        return response.publish_ack

    async def close(self) -> None:
        self.half_close()
        self.call.cancel()
        self._reader.cancel()
        # asyncio.wait, not `suppress(CancelledError): await`: a cancellation of the
        # caller (a test's own timeout) must not be swallowed here.
        await asyncio.wait({self._reader})
