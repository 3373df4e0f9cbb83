"""Server CPU per delivery and per call, measured in the server's own process:
``python -m bench.inprocess fanout|rpc|idle [options]``.

The full bench compares throughput and latency, which a shared machine makes noisy. This
tool measures what is far less load-sensitive: the server process's own CPU time
(``getrusage``: user and system) per delivered message or per call, with the server in
this process (uvloop) and the clients in a child process. ``fanout`` publishes
``--messages`` deltas at ``--rate`` per second to ``--subscribers`` subscribers (typed
WebSocket, legacy JSON, or a raw ``websockets.broadcast`` server for comparison);
``rpc`` runs ``--concurrency`` unary Publish callers over one WebSocket channel for
``--seconds``; ``idle`` holds ``--subscribers`` subscribed typed connections and reports
the Python memory they hold (tracemalloc) per connection. ``--profile`` adds a cProfile
of the server over the measured part.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import resource
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

CLIENT_TIMEOUT = 300.0


# ------------------------------------------------------------------ clients (child)


async def _client_main(mode: str, url: str, count: int, messages: int, seconds: float) -> None:
    """The child process: opens the clients, prints "ready", then does its part."""
    from websockets.asyncio.client import connect

    from client.ws_channel import WebSocketChannel
    from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

    ready, done = 0, 0

    def opened() -> None:
        nonlocal ready
        ready += 1
        if ready == count:
            print("ready", flush=True)

    def finished() -> None:
        nonlocal done
        done += 1
        if done == count:
            print("done", flush=True)

    async def typed_stream(collection: str) -> Any:
        channel = WebSocketChannel(url, compression=False)
        call: Any = sync_pb2_grpc.SyncServiceStub(channel).Sync()  # type: ignore[call-arg]
        await call.read()  # welcome
        request = sync_pb2.SyncRequest(
            request_id=1, subscribe=sync_pb2.Subscribe(collection_id=collection)
        )
        await call.write(request)
        while not (await call.read()).HasField("subscribed"):
            pass
        return call

    async def typed() -> None:
        call = await typed_stream("c")
        opened()
        got = 0
        while got < messages:
            if (await call.read()).HasField("delta"):
                got += 1
        finished()

    async def legacy() -> None:
        ws = await connect(f"{url}/?room_id={quote('c')}", compression=None, max_size=None)
        await ws.recv()  # welcome
        opened()
        got = 0
        while got < messages:
            if b'"sync"' in await ws.recv(decode=False):
                got += 1
        finished()

    async def raw() -> None:
        ws = await connect(f"{url}/broadcast", compression=None, max_size=None)
        opened()
        for _ in range(messages):
            await ws.recv(decode=False)
        finished()

    async def idle() -> None:
        await typed_stream(f"idle-{ready % 10}")
        opened()
        await asyncio.sleep(3600)

    if mode == "rpc":
        channel = WebSocketChannel(url, compression=False)
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        delta = types_pb2.Delta(collection_id="rpc", delta=b"x" * 256)
        await stub.Publish(sync_pb2.PublishRequest(delta=delta))
        print("ready", flush=True)
        end = time.monotonic() + seconds
        calls = 0

        async def caller() -> None:
            nonlocal calls
            while time.monotonic() < end:
                await stub.Publish(sync_pb2.PublishRequest(delta=delta))
                calls += 1

        await asyncio.gather(*(caller() for _ in range(count)))
        print(calls, flush=True)
        return
    one = {"typed": typed, "legacy": legacy, "raw": raw, "idle": idle}[mode]
    await asyncio.gather(*(one() for _ in range(count)))


# ------------------------------------------------------------------ server (parent)


async def _start_server(kind: str) -> tuple[str, Callable[[int], Awaitable[None]], Any]:
    """(ws URL, publish(i), server) for the subject."""
    if kind == "raw":
        from websockets.asyncio.server import ServerConnection, broadcast, serve

        room: set[ServerConnection] = set()

        async def handle(ws: ServerConnection) -> None:
            room.add(ws)
            try:
                await ws.wait_closed()
            finally:
                room.discard(ws)

        server = await serve(handle, "127.0.0.1", 0, compression=None)
        port = next(iter(server.sockets)).getsockname()[1]
        payload = b"x" * 300

        async def publish_raw(index: int) -> None:
            broadcast(room, payload)

        return f"ws://127.0.0.1:{port}", publish_raw, server

    import orjson

    from server.app import SyncwireServer
    from server.config import ServerConfig
    from syncwire.v1 import types_pb2

    config = ServerConfig(host="127.0.0.1", grpc_port=0, ws_port=0, max_connections_per_address=0)
    syncwire = SyncwireServer(config)
    await syncwire.start()

    async def publish(index: int) -> None:
        body = orjson.dumps({"seq": index, "pad": "x" * 200}) if kind == "legacy" else b"x" * 256
        await syncwire.core.publish(types_pb2.Delta(collection_id="c", delta=body))

    return syncwire.ws_url, publish, syncwire


async def _spawn(mode: str, url: str, count: int, messages: int, seconds: float) -> Any:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.inprocess",
        "--client",
        mode,
        "--url",
        url,
        "--subscribers",
        str(count),
        "--messages",
        str(messages),
        "--seconds",
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )


async def _line(proc: Any) -> bytes:
    line: bytes = await asyncio.wait_for(proc.stdout.readline(), CLIENT_TIMEOUT)
    if not line:
        raise RuntimeError("the client process ended early")
    return line.strip()


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    kind = "typed" if args.scenario in ("rpc", "idle") else args.kind
    url, publish, server = await _start_server(kind)
    mode = args.scenario if args.scenario in ("rpc", "idle") else kind
    count = args.concurrency if args.scenario == "rpc" else args.subscribers
    gc.collect()
    if args.scenario == "idle":
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
    proc = await _spawn(mode, url, count, args.messages, args.seconds)
    try:
        if await _line(proc) != b"ready":
            raise RuntimeError("the clients did not open")
        if args.scenario == "idle":
            await asyncio.sleep(1.0)
            gc.collect()
            grown = tracemalloc.take_snapshot().compare_to(before, "filename")
            total = sum(stat.size_diff for stat in grown)
            return {"scenario": "idle", "connections": count, "kib_per_conn": total / count / 1024}
        await asyncio.sleep(0.5)
        profile = cProfile.Profile() if args.profile else None
        usage = resource.getrusage(resource.RUSAGE_SELF)
        if profile is not None:
            profile.enable()
        if args.scenario == "rpc":
            units = int(await _line(proc))
        else:
            finished = asyncio.ensure_future(_line(proc))
            for index in range(args.messages):
                await publish(index)
                if args.rate:
                    await asyncio.sleep(1 / args.rate)
            await finished
            units = args.messages * count
        if profile is not None:
            profile.disable()
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if args.scenario == "idle":
            tracemalloc.stop()
        if kind == "raw":
            server.close()
        else:
            await server.stop(grace=0)
    user = (after.ru_utime - usage.ru_utime) / units * 1e6
    system = (after.ru_stime - usage.ru_stime) / units * 1e6
    unit = "call" if args.scenario == "rpc" else "delivery"
    result = {
        "scenario": args.scenario,
        "kind": kind,
        "units": units,
        f"us_per_{unit}": round(user + system, 2),
        "user_us": round(user, 2),
        "system_us": round(system, 2),
    }
    if profile is not None:
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("scenario", nargs="?", choices=("fanout", "rpc", "idle"))
    parser.add_argument("--kind", choices=("typed", "legacy", "raw"), default="typed")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="publishes/s (0: no pause)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.client:
        uvloop.run(
            _client_main(args.client, args.url, args.subscribers, args.messages, args.seconds)
        )
        return
    if args.scenario is None:
        parser.error("name a scenario: fanout, rpc or idle")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(json.dumps(uvloop.run(_measure(args))))


if __name__ == "__main__":
    main()
