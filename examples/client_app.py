"""A small application on the typed SyncClient: publish deltas, watch a collection.

    python examples/client_app.py --endpoint grpc://127.0.0.1:50051 \\
        --endpoint ws://127.0.0.1:8080 watch notes --count 10
    python examples/client_app.py --endpoint grpc://127.0.0.1:50051 \\
        --outbox notes.db publish notes --count 10

With several endpoints the client prefers the first (gRPC) and falls back to the next
(WebSocket). With ``--outbox FILE`` publishes survive a restart: ``publish --queue-only``
queues them (for example while the server is down) and exits; a later ``flush`` with the
same file delivers them, exactly once. Its type annotations are checked with mypy --strict.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from client import (
    Backoff,
    ClientConfig,
    DeltaEvent,
    ErrorEvent,
    PeerJoined,
    PeerLeft,
    PresenceChanged,
    RecoveryEvent,
    StateChange,
    SyncClient,
    SyncError,
)
from syncwire.v1 import types_pb2


def show_state(change: StateChange) -> None:
    where = f" via {change.endpoint}" if change.endpoint else ""
    why = f" ({change.error})" if change.error else ""
    print(f"state {change.state.value}{where}{why}", file=sys.stderr, flush=True)


async def watch(client: SyncClient, collection_id: str, count: int) -> int:
    """Prints `count` deltas of the collection, and whatever else happens there."""
    subscription = await client.subscribe(
        collection_id, join_presence=True, user_info=types_pb2.UserInfo(user_id="example")
    )
    print(f"joined {collection_id} at offset {subscription.offset}", flush=True)
    seen = 0
    async for event in client.events():
        match event:
            case DeltaEvent():
                seen += 1
                print(f"delta {event.offset} {event.data.decode(errors='replace')}", flush=True)
                if seen >= count:
                    return 0
            case RecoveryEvent() if event.recovery.lost_deltas:
                print(f"gap in {event.collection_id}: {event.recovery.name}", flush=True)
            case RecoveryEvent():
                print(f"recovered {event.replayed} deltas", flush=True)
            case PeerJoined() | PeerLeft() | PresenceChanged():
                print(f"presence {type(event).__name__}", flush=True)
            case ErrorEvent():
                print(f"error {event.error}", flush=True)
    return 1


async def publish(client: SyncClient, collection_id: str, count: int, queue_only: bool) -> int:
    """Publishes `count` deltas; with `queue_only`, only puts them in the outbox."""
    pending = [
        client.submit(collection_id, f"delta {i}".encode(), crdt_type=types_pb2.CRDT_TYPE_G_COUNTER)
        for i in range(count)
    ]
    if queue_only:
        print(f"queued {len(pending)} outbox={client.outbox_size}", flush=True)
        return 0
    for item in pending:
        ack = await item
        print(f"ack {ack.offset}{' duplicate' if ack.duplicate else ''}", flush=True)
    return 0


async def flush(client: SyncClient) -> int:
    """Delivers what an earlier run left in the outbox file."""
    left = client.outbox_size
    await client.flush()
    print(f"flushed {left}", flush=True)
    return 0


async def run(args: argparse.Namespace) -> int:
    config = ClientConfig(
        backoff=Backoff(base=args.backoff_base, cap=args.backoff_cap),
        outbox_path=args.outbox,
        close_flush_timeout=0.0 if args.command == "publish" and args.queue_only else 5.0,
    )
    async with SyncClient(args.endpoint, config) as client:
        client.on_state_change(show_state)
        async with asyncio.timeout(args.timeout):
            if args.command == "watch":
                return await watch(client, args.collection, args.count)
            if args.command == "publish":
                return await publish(client, args.collection, args.count, args.queue_only)
            return await flush(client)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Publish deltas to, or watch, a collection.")
    parser.add_argument("--endpoint", action="append", required=True, help="in preference order")
    parser.add_argument("--outbox", help="SQLite file keeping unacknowledged publishes")
    parser.add_argument("--backoff-base", type=float, default=0.5)
    parser.add_argument("--backoff-cap", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this long")
    commands = parser.add_subparsers(dest="command", required=True)
    watch_parser = commands.add_parser("watch", help="print deltas of a collection")
    watch_parser.add_argument("collection")
    watch_parser.add_argument("--count", type=int, default=10)
    publish_parser = commands.add_parser("publish", help="publish deltas")
    publish_parser.add_argument("collection")
    publish_parser.add_argument("--count", type=int, default=10)
    publish_parser.add_argument("--queue-only", action="store_true")
    commands.add_parser("flush", help="deliver what the outbox file holds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        return asyncio.run(run(args))
    except (SyncError, TimeoutError) as exc:
        print(f"client_app: {exc!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
