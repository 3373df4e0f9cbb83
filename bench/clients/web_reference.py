"""The Python twin of web/bench/client.ts for the ``web`` scenario: the same unary and
fan-out measurement through ``WebSocketChannel``, so the Node transport's figures have a
reference taken against the same server in the same run.

    python -m bench.clients.web_reference unary  URL SECONDS CONCURRENCY COLLECTION deflate|plain
    python -m bench.clients.web_reference fanout URL SECONDS SUBSCRIBERS COLLECTION deflate|plain

Prints one JSON line: {"rate": per second, "count": calls or deliveries, "errors": n}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator

import grpc

from client.ws_channel import WebSocketChannel
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

PAYLOAD = b"\x07" * 256
FANOUT_PUBLISHERS = 4


async def _callers(
    stub: sync_pb2_grpc.SyncServiceAsyncStub, collection: str, count: int, until: float
) -> tuple[int, int]:
    calls = errors = 0
    request = sync_pb2.PublishRequest(
        delta=types_pb2.Delta(collection_id=collection, delta=PAYLOAD)
    )

    async def caller() -> None:
        nonlocal calls, errors
        while time.perf_counter() < until:
            try:
                await stub.Publish(request)
                calls += 1
            except grpc.RpcError:
                errors += 1

    await asyncio.gather(*(caller() for _ in range(count)))
    return calls, errors


async def unary(
    url: str, seconds: float, concurrency: int, collection: str, deflate: bool
) -> dict[str, float]:
    async with WebSocketChannel(url, compression=deflate) as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        await stub.GetServerInfo(sync_pb2.GetServerInfoRequest())
        started = time.perf_counter()
        calls, errors = await _callers(stub, collection, concurrency, started + seconds)
        elapsed = time.perf_counter() - started
    return {"rate": calls / elapsed, "count": calls, "errors": errors}


async def fanout(
    url: str, seconds: float, subscribers: int, collection: str, deflate: bool
) -> dict[str, float]:
    async with WebSocketChannel(url, compression=deflate) as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        stop = asyncio.Event()
        received = [0] * subscribers
        last_delivery = 0.0
        subscribed = 0
        all_subscribed = asyncio.Event()
        expected = float("inf")
        all_received = asyncio.Event()

        async def stream(index: int) -> None:
            nonlocal last_delivery, subscribed

            async def requests() -> AsyncIterator[sync_pb2.SyncRequest]:
                yield sync_pb2.SyncRequest(
                    request_id=1, subscribe=sync_pb2.Subscribe(collection_id=collection)
                )
                await stop.wait()

            call = stub.Sync(requests())
            async for response in call:
                kind = response.WhichOneof("kind")
                if kind == "subscribed":
                    subscribed += 1
                    if subscribed == subscribers:
                        all_subscribed.set()
                elif kind == "delta":
                    received[index] += 1
                    last_delivery = time.perf_counter()
                    if all(count >= expected for count in received):
                        all_received.set()
                if stop.is_set():
                    call.cancel()

        tasks = [asyncio.create_task(stream(index)) for index in range(subscribers)]
        await all_subscribed.wait()
        started = time.perf_counter()
        calls, errors = await _callers(stub, collection, FANOUT_PUBLISHERS, started + seconds)
        expected = calls
        if all(count >= expected for count in received):
            all_received.set()
        try:
            await asyncio.wait_for(all_received.wait(), 60)
        except TimeoutError:
            pass
        deliveries = sum(received)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    missing = subscribers * calls - deliveries
    return {
        "rate": deliveries / (last_delivery - started),
        "count": deliveries,
        "errors": errors + missing,
    }


def main(argv: list[str]) -> int:
    mode, url, seconds, width, collection, compression = argv
    run = unary if mode == "unary" else fanout
    figures = asyncio.run(
        run(url, float(seconds), int(width), collection, compression == "deflate")
    )
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
