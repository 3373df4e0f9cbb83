"""Issue 13, item 5: a broker that cannot be reached (a closed port, a Redis killed and
restarted) makes every request that needs it answer UNAVAILABLE with reason
`broker_unavailable` and a retry hint, keeps health NOT_SERVING until it is back, and the
`syncwire` command's --timeout holds. Real server processes, real CLI processes, real
redis-server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from wire.status import REASON_CODE_METADATA_KEY, RETRY_AFTER_METADATA_KEY

from .process_harness import ServerProcess, start_server_process
from .redis_harness import (  # noqa: F401  (fixtures)
    RedisServer,
    redis_base_url,
    redis_server,
    redis_url,
)
from .service_harness import SyncStream, running_server
from .task_dump import dump_tasks_after, print_tasks
from .tcp_proxy import TcpProxy
from .test_cli import closed_port, one_line_error, run_cli

pytestmark = pytest.mark.timeout(90)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@contextlib.asynccontextmanager
async def server_process(*args: str) -> AsyncIterator[ServerProcess]:
    server = await start_server_process(*args)
    try:
        yield server
    finally:
        await server.terminate()


@contextlib.asynccontextmanager
async def channel_to(server: ServerProcess) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(server.grpc_address)
    try:
        yield channel
    finally:
        await channel.close(None)


class HealthWatch:
    """Follows the server's health through the standard Watch stream (no polling)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        stub = health_pb2_grpc.HealthStub(channel)
        self._call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        self.seen: list[int] = []

    async def until(self, status: int) -> None:
        async with asyncio.timeout(30):
            while not self.seen or self.seen[-1] != status:
                response = await self._call.read()
                assert isinstance(response, health_pb2.HealthCheckResponse), response
                self.seen.append(response.status)

    def cancel(self) -> None:
        self._call.cancel()


def refused_by_broker(response: sync_pb2.SyncResponse) -> None:
    assert response.WhichOneof("kind") == "error", response
    error = response.error
    assert error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert error.reason_code == "broker_unavailable"
    assert error.retry_after_ms > 0
    assert "broker unavailable" in error.message


async def publish_once_available(
    stream: SyncStream, collection_id: str, data: bytes
) -> sync_pb2.PublishAck:
    """Publishes as a client does after an outage: a broker_unavailable refusal is
    retried after its retry_after_ms (the pooled connections to Redis may still be
    reconnecting when health says SERVING); fails if Redis stays unusable for 30 s."""
    publish = sync_pb2.Publish(delta=types_pb2.Delta(collection_id=collection_id, delta=data))
    async with asyncio.timeout(30):
        while True:
            response = await stream.expect_reply(stream.send(publish=publish))
            if response.WhichOneof("kind") == "publish_ack":
                return response.publish_ack
            refused_by_broker(response)
            await asyncio.sleep(response.error.retry_after_ms / 1000)


async def assert_every_broker_request_is_refused(channel: grpc.aio.Channel) -> None:
    stub = sync_pb2_grpc.SyncServiceStub(channel)
    delta = types_pb2.Delta(collection_id="doc", delta=b"x")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Publish(sync_pb2.PublishRequest(delta=delta), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    metadata: Any = refused.value.trailing_metadata() or ()
    trailers = {str(key): str(value) for key, value in metadata}
    assert trailers.get(REASON_CODE_METADATA_KEY) == "broker_unavailable"
    assert int(trailers.get(RETRY_AFTER_METADATA_KEY, "0")) > 0
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetPresence(sync_pb2.GetPresenceRequest(collection_id="doc"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    stream = SyncStream(stub)
    try:
        await stream.welcome()
        for request in (
            {"subscribe": sync_pb2.Subscribe(collection_id="doc", last_offset=0)},
            {"publish": sync_pb2.Publish(delta=delta)},
        ):
            refused_by_broker(await stream.expect_reply(stream.send(**request)))
    finally:
        await stream.close()


def assert_cli_publish_gives_up(server: ServerProcess, repo_root: Path) -> None:
    """`syncwire publish --timeout 3` ends (no hang) with one line and exit code 3."""
    url = f"grpc://{server.grpc_address}"
    result = run_cli("publish", "--server", url, "--timeout", "3", "doc", "hi", repo=repo_root)
    assert result.code == 3, result
    assert "broker unavailable" in one_line_error(result)


async def test_broker_on_a_closed_port(repo_root: Path) -> None:
    broker = f"redis://127.0.0.1:{closed_port()}/0"
    async with (
        server_process("--broker", broker, "--broker-timeout", "1") as server,
        channel_to(server) as channel,
    ):
        url = f"grpc://{server.grpc_address}"
        health = run_cli("health", "--server", url, "--timeout", "3", repo=repo_root)
        assert health.code == 3 and "NOT_SERVING" in one_line_error(health)
        assert_cli_publish_gives_up(server, repo_root)
        presence = run_cli("presence", "--server", url, "--timeout", "3", "doc", repo=repo_root)
        assert presence.code == 3 and "broker unavailable" in one_line_error(presence)
        await assert_every_broker_request_is_refused(channel)


async def test_redis_killed_then_restarted(
    repo_root: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    async with (
        server_process("--broker", redis_server.url(), "--broker-timeout", "1") as server,
        channel_to(server) as channel,
    ):
        watch = HealthWatch(channel)
        try:
            await watch.until(SERVING)
            url = f"grpc://{server.grpc_address}"
            published = run_cli("publish", "--server", url, "doc", "one", repo=repo_root)
            assert published.code == 0, published

            redis_server.kill()
            await watch.until(NOT_SERVING)
            health = run_cli("health", "--server", url, "--timeout", "3", repo=repo_root)
            assert health.code == 3 and "NOT_SERVING" in one_line_error(health)
            assert_cli_publish_gives_up(server, repo_root)
            await assert_every_broker_request_is_refused(channel)

            redis_server.start()
            await watch.until(SERVING)
            assert watch.seen[-3:] == [SERVING, NOT_SERVING, SERVING]
            again = run_cli("publish", "--server", url, "doc", "two", repo=repo_root)
            assert again.code == 0, again
            health = run_cli("health", "--server", url, repo=repo_root)
            assert health.code == 0 and "SERVING" in health.out
        finally:
            watch.cancel()


async def test_redis_that_stops_answering(redis_url: str) -> None:  # noqa: F811
    """Redis accepts the bytes but answers nothing (a hung server, a black-holed
    network): requests are answered broker_unavailable after --broker-timeout instead of
    hanging, health turns NOT_SERVING once the node's ping goes unanswered, and both
    recover on a fresh connection."""
    phases: list[str] = []
    try:
        # Both before pytest's 90 s, to say where it stuck: the dump comes from a loop
        # timer, so it is printed even if some awaited code swallows the cancellation.
        with dump_tasks_after(65, lambda: f"phases {phases}"):
            async with asyncio.timeout(75):
                await _redis_that_stops_answering(redis_url, phases)
    except TimeoutError:
        print_tasks(f"timed out after phases {phases}")
        raise AssertionError(f"stuck after {phases} (task await chains on stdout)") from None


async def _redis_that_stops_answering(url: str, phases: list[str]) -> None:
    target = urlsplit(url)
    assert target.hostname is not None and target.port is not None
    async with TcpProxy(target.hostname, target.port) as proxy:
        try:
            async with running_server(
                broker=urlunsplit(target._replace(netloc=proxy.address)), broker_timeout=0.5
            ) as server:
                channel = grpc.aio.insecure_channel(server.grpc_address)
                watch = HealthWatch(channel)
                stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
                try:
                    await watch.until(SERVING)
                    await stream.welcome()
                    await stream.subscribe("doc")
                    phases.append("subscribed")
                    proxy.stall()  # every open connection, the node's pub/sub one included
                    await proxy.refuse(cut=False)  # and no new one until it listens again
                    delta = types_pb2.Delta(collection_id="doc", delta=b"x")
                    publish = sync_pb2.Publish(delta=delta)
                    refused_by_broker(await stream.expect_reply(stream.send(publish=publish)))
                    phases.append("refused")
                    await watch.until(NOT_SERVING)  # the node's ping went unanswered
                    phases.append("not serving")
                    await proxy.start()
                    await watch.until(SERVING)  # reconnected over a new connection
                    phases.append("serving")
                    ack = await publish_once_available(stream, "doc", b"after")
                    assert ack.offset >= 1
                    phases.append("published")
                finally:
                    watch.cancel()
                    await stream.close()
                    phases.append("stream closed")
                    await channel.close(None)
                    phases.append("channel closed")
        finally:
            phases.append("server stopped")
    phases.append("proxy closed")
