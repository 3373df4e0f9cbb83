"""Catch-up: many subscribers reconnect behind a collection at once and recover from
history. A seeder publishes the deltas they missed; each subscriber then subscribes with
the position it had (epoch, last offset) and counts the replayed deltas."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.clients import SYNCWIRE_GRPC, SYNCWIRE_WS
from bench.clients.syncwire import ChannelFactory, grpc_channel, ws_channel_factory
from bench.jobs.common import bounded, describe
from bench.payload import encode_binary
from bench.timing import sleep_until
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from wire.sentinels import EOF

SEED_WINDOW = 64  # publishes in flight while seeding


def _factory(kind: str, compression: bool) -> ChannelFactory:
    if kind == SYNCWIRE_GRPC:
        return grpc_channel
    if kind == SYNCWIRE_WS:
        return ws_channel_factory(compression)
    raise ValueError(f"catch-up needs a syncwire client kind, not {kind!r}")


async def _subscribe(call: Any, collection: str, epoch: str = "", since: int | None = None) -> Any:
    subscribe = sync_pb2.Subscribe(collection_id=collection, epoch=epoch)
    if since is not None:
        subscribe.last_offset = since
    await call.write(sync_pb2.SyncRequest(request_id=1, subscribe=subscribe))
    while True:
        response = await call.read()
        if response is EOF:
            raise RuntimeError("stream ended before Subscribed")
        if response.HasField("subscribed"):
            return response.subscribed
        if response.HasField("error") or response.HasField("disconnect"):
            raise RuntimeError(f"subscribe refused: {response}")


async def seed(kind: str, endpoint: str, collection: str, count: int, compression: bool) -> dict[str, Any]:
    """Publishes `count` deltas to a fresh collection; returns the position a subscriber
    had before them (epoch, offset)."""
    channel = _factory(kind, compression)(endpoint)
    try:
        call: Any = sync_pb2_grpc.SyncServiceStub(channel).Sync()  # type: ignore[call-arg]
        await call.read()  # welcome
        before = await _subscribe(call, collection)
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        published = 0

        async def publish_some(n: int) -> None:
            nonlocal published
            for _ in range(n):
                published += 1
                delta = types_pb2.Delta(collection_id=collection, delta=encode_binary(published, 0))
                await stub.Publish(sync_pb2.PublishRequest(delta=delta))

        per = count // SEED_WINDOW
        sizes = [per + (1 if i < count % SEED_WINDOW else 0) for i in range(SEED_WINDOW)]
        await asyncio.gather(*(publish_some(n) for n in sizes if n))
        call.cancel()
        return {"epoch": before.epoch, "offset": before.offset}
    finally:
        await channel.close(None)


async def recover(
    kind: str,
    endpoint: str,
    collection: str,
    count: int,
    epoch: str,
    since: int,
    expected: int,
    t_start: int,
    compression: bool,
) -> dict[str, Any]:
    """`count` subscribers connect and subscribe from (`epoch`, `since`) at `t_start`,
    all at once; each reads until it has `expected` deltas. Reports when the last one
    finished (CLOCK_MONOTONIC ns) and every failure (a cut stream, a short replay)."""
    factory = _factory(kind, compression)
    finished: list[int] = []
    recovered = 0
    channels: list[Any] = []

    def one() -> Any:
        async def run() -> None:
            nonlocal recovered
            channel = factory(endpoint)
            channels.append(channel)
            call: Any = sync_pb2_grpc.SyncServiceStub(channel).Sync()  # type: ignore[call-arg]
            await call.read()  # welcome
            await sleep_until(t_start)
            subscribed = await _subscribe(call, collection, epoch, since)
            if subscribed.replayed != expected:
                raise RuntimeError(
                    f"recovery {subscribed.recovery}: {subscribed.replayed} of {expected} replayed"
                )
            got = 0
            while got < expected:
                response = await call.read()
                if response is EOF:
                    raise RuntimeError(f"stream cut after {got} of {expected} deltas")
                if response.HasField("delta"):
                    got += 1
                elif response.HasField("disconnect"):
                    raise RuntimeError(f"cut after {got} deltas: {response.disconnect.reason}")
            recovered += got
            finished.append(time.monotonic_ns())
            call.cancel()

        return run

    cpu_start = time.process_time()
    try:
        failures = await bounded([one() for _ in range(count)], count)
    finally:
        await asyncio.gather(*(c.close(None) for c in channels), return_exceptions=True)
    return {
        "completed": len(finished),
        "failed": len(failures),
        "first_error": describe(failures[0]) if failures else "",
        "last_done": max(finished) if finished else 0,
        "recovered": recovered,
        "cpu_seconds": time.process_time() - cpu_start,
    }
