"""The write-now fast path of fan-out: a live event goes from the dispatch loop straight
to an idle session's socket, and everything else keeps the queue's order and bounds."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.frames import Frame, Opcode

from server.event_queue import EventQueue
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from syncwire.ws.v1 import frame_pb2
from tests.service_harness import running_server
from wire.codec import MessageRecordCache, encode_record
from wire.send_now import _frame


def delta(offset: int) -> sync_pb2.SyncResponse:
    return sync_pb2.SyncResponse(delta=types_pb2.Delta(collection_id="c", offset=offset))


async def test_write_now_takes_events_only_while_the_consumer_waits_on_an_empty_queue() -> None:
    queue = EventQueue(limit=100, limit_bytes=1 << 20)
    written: list[int] = []
    accept = True

    def write_now(event: sync_pb2.SyncResponse) -> bool:
        if accept:
            written.append(event.delta.offset)
        return accept

    queue.write_now = write_now
    assert queue.put(delta(1))  # nobody waits in get(): queued
    assert written == []
    assert (await queue.get()).delta.offset == 1

    consumer = asyncio.create_task(queue.get())
    await asyncio.sleep(0)  # the consumer now waits on an empty queue
    assert queue.put(delta(2))
    assert written == [2] and len(queue) == 0

    accept = False  # e.g. the call's window is closed: queued instead
    assert queue.put(delta(3))
    accept = True  # the hook could take the next one, but it must wait behind 3
    assert queue.put(delta(4))
    assert written == [2]
    assert (await consumer).delta.offset == 3
    assert (await queue.get()).delta.offset == 4


async def test_a_live_bound_still_applies_when_the_hook_refuses() -> None:
    queue = EventQueue(limit=2, limit_bytes=1 << 20)
    queue.write_now = lambda event: False
    consumer = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert queue.put(delta(1))  # wakes the consumer, which has not run yet
    assert queue.put(delta(2))
    assert not queue.put(delta(3))  # slow consumer: the bound counts what the hook refused
    assert (await consumer).delta.offset == 1


def test_broadcast_frames_and_records_are_byte_identical_to_the_libraries() -> None:
    for size in (0, 1, 125, 126, 65535, 65536):
        message = b"m" * size
        for text, opcode in ((False, Opcode.BINARY), (True, Opcode.TEXT)):
            expected = Frame(opcode, message).serialize(mask=False, extensions=[])
            assert _frame(message, text) == expected
    records = MessageRecordCache()
    payload = b"p" * 300
    for call_id in (1, 3, 200):
        frame = frame_pb2.Frame(call_id=call_id, message=frame_pb2.CallMessage(payload=payload))
        record = records.record(call_id, payload)
        assert record == encode_record(frame)
        assert records.record(call_id, payload) is record  # encoded once per call id


async def test_fan_out_over_websocket_keeps_order_for_fast_and_stalled_subscribers() -> None:
    from client.ws_channel import WebSocketChannel

    async with running_server() as server:
        channels = [WebSocketChannel(server.ws_url) for _ in range(4)]
        calls: list[Any] = []
        for channel in channels:
            call: Any = sync_pb2_grpc.SyncServiceStub(channel).Sync()  # type: ignore[call-arg]
            assert (await call.read()).HasField("welcome")
            await call.write(
                sync_pb2.SyncRequest(
                    request_id=1, subscribe=sync_pb2.Subscribe(collection_id="order")
                )
            )
            while not (await call.read()).HasField("subscribed"):
                pass
            calls.append(call)
        total = 400
        async with asyncio.timeout(60):
            for index in range(total):
                await server.core.publish(
                    types_pb2.Delta(collection_id="order", delta=index.to_bytes(4, "big"))
                )
                if index % 50 == 0:
                    await asyncio.sleep(0)  # let some go out on the write-now path

            async def read_all(call: Any) -> list[int]:
                got: list[int] = []
                while len(got) < total:
                    response = await call.read()
                    if response.HasField("delta"):
                        got.append(int.from_bytes(response.delta.delta, "big"))
                return got

            # The subscribers read only now: the later deltas found them backlogged
            # and took the queued path, behind what went out at once.
            results = await asyncio.gather(*(read_all(call) for call in calls))
        for got in results:
            assert got == list(range(total))
        for channel in channels:
            await channel.close()
