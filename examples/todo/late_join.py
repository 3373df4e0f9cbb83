"""``python -m examples.todo.late_join``: a newcomer gets the whole list from a snapshot.

The server keeps 1,000 deltas of history; a writer makes 5,000 edits. An application
component (the *archivist*, embedded next to the server) follows the collection and
stores its replica's state as the collection's snapshot every 1,500 offsets with the
server API (`SyncCore.put_snapshot`). A client that joins afterwards from offset 0
cannot be served from history alone (offsets 1..4,000 are gone); it receives the
snapshot at offset 4,500 and then the 500 deltas after it, exactly once, and ends with
the writer's list. Exits 0 when it does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from client import ClientConfig, DeltaEvent, Recovery, SnapshotEvent, SyncClient
from server.app import SyncwireServer
from server.config import ServerConfig

from .model import Op, TodoList, decode, encode

COLLECTION = "todo-late-join"
EDITS = 5000
ITEMS = 1000
HISTORY = 1000
SNAPSHOT_EVERY = 1500
CONFIG = ClientConfig(outbox_path=None)


def edits(writer: TodoList) -> list[Op]:
    """5,000 edits: 1,000 adds, then renames, done marks and removals."""
    ops = [writer.add(f"i{n}", f"item {n}") for n in range(ITEMS)]
    for n in range(EDITS - ITEMS):
        item, round_ = f"i{n % ITEMS}", n // ITEMS
        if round_ == 0 or round_ == 2:
            ops.append(writer.rename(item, f"item {n % ITEMS} (v{round_})"))
        elif round_ == 1 or n % 10:
            ops.append(writer.set_done(item, round_ == 1))
        else:
            ops.append(writer.remove(item))
    return ops


async def archive(server: SyncwireServer, url: str, done: asyncio.Event) -> None:
    """Follows the collection and stores a snapshot every SNAPSHOT_EVERY offsets."""
    replica = TodoList("archivist")
    async with SyncClient([url], CONFIG) as client:
        await client.connect()
        await client.subscribe(COLLECTION, last_offset=0)
        done.set()  # subscribed: nothing published from now on is missed
        async for event in client.events():
            if not isinstance(event, DeltaEvent):
                continue
            message = decode_op(event.data)
            if message is not None:
                replica.apply(message)
            if event.offset % SNAPSHOT_EVERY == 0:
                await server.core.put_snapshot(
                    COLLECTION, event.offset, replica.to_state(), event.epoch
                )
            if event.offset == EDITS:
                return


def decode_op(data: bytes) -> Op | None:
    """The todo edit a delta holds (None for the demo's other messages)."""
    message = decode(json.loads(data))
    return message if isinstance(message, Op) else None


async def late_join(url: str) -> tuple[TodoList, Recovery, int, int]:
    """Joins from offset 0; returns the replica, the recovery outcome, the snapshot's
    offset and how many deltas followed it."""
    replica = TodoList("newcomer")
    async with SyncClient([url], CONFIG) as client:
        await client.connect()
        subscription = await client.subscribe(COLLECTION, last_offset=0)
        snapshot_offset, deltas = 0, 0
        if subscription.server_offset == 0:
            return replica, subscription.recovery, 0, 0
        async for event in client.events():
            if isinstance(event, SnapshotEvent):
                replica = TodoList.from_state("newcomer", event.data)
                snapshot_offset = event.offset
            elif isinstance(event, DeltaEvent):
                message = decode_op(event.data)
                if message is not None:
                    replica.apply(message)
                deltas += 1
            if subscription.offset >= subscription.server_offset:
                return replica, subscription.recovery, snapshot_offset, deltas
    raise RuntimeError("the client closed before the late join completed")


async def run() -> bool:
    config = ServerConfig(host="127.0.0.1", grpc_port=0, ws_port=0, history_size=HISTORY)
    server = SyncwireServer(config)
    await server.start()
    try:
        grpc_url, ws_url = f"grpc://{server.grpc_address}", server.ws_url
        following = asyncio.Event()
        archivist = asyncio.create_task(archive(server, grpc_url, following))
        await following.wait()
        writer = TodoList("writer")
        async with SyncClient([ws_url], CONFIG) as client:
            await client.connect()
            ops = edits(writer)
            for start in range(0, len(ops), 100):  # 100 publishes in flight at a time
                batch = ops[start : start + 100]
                await asyncio.gather(*(client.publish(COLLECTION, encode(op)) for op in batch))
        print(f"writer: {len(ops)} edits published; the server keeps the last {HISTORY}")
        await archivist
        print(f"archivist: stored a snapshot every {SNAPSHOT_EVERY} offsets")
        replica, recovery, snapshot_offset, deltas = await late_join(grpc_url)
        print(
            f"newcomer: recovery {recovery.name}: snapshot at offset {snapshot_offset}, "
            f"then {deltas} deltas"
        )
        same = replica.snapshot() == writer.snapshot()
        visible = len(writer.snapshot())
        verdict = "the same list as the writer" if same else "a DIFFERENT list"
        print(f"newcomer: {len(replica.snapshot())} of {visible} items, {verdict}", flush=True)
        return same and recovery is Recovery.SNAPSHOT
    finally:
        await server.stop(grace=1.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.todo.late_join", description=__doc__)
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this long")
    args = parser.parse_args(argv)

    async def bounded() -> bool:
        async with asyncio.timeout(args.timeout):
            return await run()

    return 0 if asyncio.run(bounded()) else 1


if __name__ == "__main__":
    sys.exit(main())
