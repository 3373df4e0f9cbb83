"""EventQueue: what each bound counts, and the order a replay and held events keep."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from server.event_queue import EventQueue, SessionEnd, SessionEnded
from syncwire.v1 import sync_pb2, types_pb2


def delta(offset: int, collection_id: str = "c", size: int = 10) -> sync_pb2.SyncResponse:
    return sync_pb2.SyncResponse(
        delta=types_pb2.Delta(collection_id=collection_id, offset=offset, delta=b"d" * size)
    )


def reply(request_id: int) -> sync_pb2.SyncResponse:
    return sync_pb2.SyncResponse(
        request_id=request_id, unsubscribed=sync_pb2.Unsubscribed(collection_id="c")
    )


def drain(queue: EventQueue) -> list[int]:
    """Offsets (deltas) or -request_id (replies) in the order the queue hands them out."""
    out = []
    while (event := queue.get_nowait()) is not None:
        out.append(event.delta.offset if event.HasField("delta") else -event.request_id)
    return out


async def test_a_replay_is_not_live_backlog_and_held_events_follow_it() -> None:
    queue = EventQueue(limit=3, limit_bytes=1 << 20)
    replay = queue.catch_up()
    assert queue.hold(replay, delta(101))  # arrived while history was read
    queue.put_reply(reply(1))  # the Subscribed reply goes first
    queue.start(replay, [delta(offset) for offset in range(1, 101)])
    assert len(queue) == 1 + 100 + 1
    assert queue.live_pending[0] == 1  # only the held live event counts
    assert queue.hold(replay, delta(102)) and queue.hold(replay, delta(103))
    assert not queue.hold(replay, delta(104))  # the live bound is full: slow consumer
    assert queue.put(delta(1, "other")) is False
    assert drain(queue) == [-1, *range(1, 104)]
    assert len(queue) == 0 and queue.live_pending == (0, 0)
    assert queue.hold(replay, delta(105))  # the replay is done: straight to the queue
    assert drain(queue) == [105]


async def test_live_bytes_bound_lets_one_large_event_through() -> None:
    queue = EventQueue(limit=100, limit_bytes=1000)
    assert queue.put(delta(1, size=5000))  # alone: passes
    assert not queue.put(delta(2, size=10))  # anything more waits for the reader
    assert drain(queue) == [1]
    assert queue.put(delta(3, size=500)) and not queue.put(delta(4, size=600))


async def test_cancelled_replay_stops_and_uncounts() -> None:
    queue = EventQueue(limit=10, limit_bytes=1 << 20)
    replay = queue.catch_up()
    queue.start(replay, [delta(1), delta(2)])
    queue.hold(replay, delta(3))
    queue.cancel(replay)
    assert len(queue) == 0 and queue.live_pending == (0, 0)
    assert queue.hold(replay, delta(4))  # late events of a dropped subscription vanish
    assert drain(queue) == []


async def test_unread_replies_close_the_request_gate_until_read() -> None:
    queue = EventQueue(limit=2, limit_bytes=1 << 20)
    queue.put_reply(reply(1))
    assert not queue.replies_full
    queue.put_reply(reply(2))
    assert queue.replies_full
    waiting = asyncio.ensure_future(queue.wait_for_reply_room())
    await asyncio.sleep(0)
    assert not waiting.done()
    assert (await queue.get()).request_id == 1
    await asyncio.wait_for(waiting, 1)
    queue.end(SessionEnd(grpc.StatusCode.OK, "bye"))
    assert (await queue.get()).request_id == 2
    with pytest.raises(SessionEnded):
        await queue.get()
