"""The README's client example: subscribe, publish, read your own delta back.

Run a server first (`python -m server`), then `python examples/hello.py [ENDPOINT ...]`.
"""

import asyncio
import sys

from client import ClientConfig, DeltaEvent, RecoveryEvent, ServerUnreachableError, SyncClient
from syncwire.v1 import types_pb2


async def main(endpoints: list[str], first_connect_timeout: float = 10.0) -> int:
    # Prefer native gRPC; fall back to the WebSocket framing when gRPC is unreachable.
    config = ClientConfig(outbox_path=None, first_connect_timeout=first_connect_timeout)
    async with SyncClient(endpoints, config) as client:
        print("connecting to", " or ".join(endpoints), flush=True)
        try:
            await client.connect()  # gives up after first_connect_timeout seconds
        except ServerUnreachableError as error:
            print(f"server unreachable: {error.message} (start one: python -m server)")
            return 1
        subscription = await client.subscribe("doc-1", join_presence=True)
        print("joined doc-1 at offset", subscription.offset, "epoch", subscription.epoch)
        ack = await client.publish("doc-1", b"hello", crdt_type=types_pb2.CRDT_TYPE_RGA)
        print("published at offset", ack.offset)
        async for event in client.events():
            if isinstance(event, DeltaEvent) and event.offset == ack.offset:
                print("received", event.data, "from", event.delta.peer_id)
                break
            if isinstance(event, RecoveryEvent) and event.recovery.lost_deltas:
                print("history was lost; resynchronise from your own state")
        print("present:", [p.peer_id for p in await client.presence("doc-1")])
    return 0


if __name__ == "__main__":
    given = sys.argv[1:] or ["grpc://127.0.0.1:50051", "ws://127.0.0.1:8080"]
    sys.exit(asyncio.run(main(given)))
