"""The README's client example: subscribe, publish, read your own delta back.

Run a server first (`python -m server`), then `python examples/hello.py`.
"""

import asyncio

from client import ClientConfig, DeltaEvent, RecoveryEvent, SyncClient
from syncwire.v1 import types_pb2


async def main(endpoints: list[str]) -> None:
    # Prefer native gRPC; fall back to the WebSocket framing when gRPC is unreachable.
    async with SyncClient(endpoints, ClientConfig(outbox_path=None)) as client:
        await client.connect()
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


if __name__ == "__main__":
    asyncio.run(main(["grpc://127.0.0.1:50051", "ws://127.0.0.1:8080"]))
