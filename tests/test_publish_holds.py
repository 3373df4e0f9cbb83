"""The server keeps a session's publish order per collection across refusals for now
(`server.publish_order`): a publish refused for now holds its collection until it comes
back, later ones are refused ABORTED `publish_held`; clients see `publish_holds` in
ServerInfo and pipeline publishes of one collection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from client import ClientConfig, Endpoint, SyncClient
from server.app import SyncwireServer
from server.errors import RequestError
from server.publish_order import HOLD_SECONDS, PUBLISH_HELD, PublishHolds
from server.ratelimit import RateLimiter
from syncwire.v1 import sync_pb2, types_pb2
from tests.clock_harness import ManualClock
from tests.service_harness import TRANSPORTS, SyncStream, running_server, stream_on

pytestmark = pytest.mark.timeout(90)


def publish_request(collection_id: str, n: int) -> sync_pb2.Publish:
    """Publish number `n` of a test sequence: data b"n", client_message_id "m-n"."""
    return sync_pb2.Publish(
        delta=types_pb2.Delta(
            collection_id=collection_id,
            crdt_type=types_pb2.CRDT_TYPE_RGA,
            delta=str(n).encode(),
            client_message_id=f"m-{n}",
        )
    )


async def stored(server: SyncwireServer, collection_id: str) -> list[bytes]:
    """The deltas the broker holds for `collection_id`, in offset order."""
    history = await server.core.broker.history(collection_id, 0, "", 10_000)
    return [event.delta.delta for event in history.events]


def refusals(server: SyncwireServer, reason: str) -> float:
    return float(server.core.metrics.request_errors.labels(reason)._value.get())


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_pipelined_publishes_through_a_rate_limit_are_stored_in_send_order(
    transport: str,
) -> None:
    """A raw stream sends publishes 1..40 of one collection at once through a rate limit
    (50/s, burst 10) and, after each round, again from the oldest refused one (after its
    retry_after): the history holds 1..40 in send order, each once."""
    count = 40
    async with running_server(rate_limit_messages=50.0, rate_limit_burst=0.2) as server:
        async with stream_on(server, transport) as stream:
            pending = list(range(1, count + 1))
            async with asyncio.timeout(60):
                while pending:
                    sent = [(stream.send(publish=publish_request("c", n)), n) for n in pending]
                    refused: list[tuple[int, int]] = []
                    for request_id, n in sent:
                        reply = await stream.expect_reply(request_id)
                        if reply.HasField("error"):
                            assert reply.error.retry_after_ms > 0, reply.error
                            refused.append((n, reply.error.retry_after_ms))
                    if not refused:
                        break
                    oldest = min(n for n, _ in refused)
                    pending = [n for n in pending if n >= oldest]
                    # the protocol's retry wait, not an ordering sleep
                    await asyncio.sleep(max(wait for _, wait in refused) / 1000)
        assert await stored(server, "c") == [str(n).encode() for n in range(1, count + 1)]
        assert refusals(server, "rate_limited") > 0, "the rate limit refused nothing"
        assert refusals(server, PUBLISH_HELD) > 0, "no later publish was held"


@contextlib.asynccontextmanager
async def held_server(clock: ManualClock) -> AsyncIterator[SyncwireServer]:
    """A server whose rate limit (one message, then one per 250 ms) and publish holds
    both run on `clock`."""
    async with running_server() as server:
        server.core.rate_limiter = RateLimiter(4.0, 0.0, 0.25, clock.time)
        server.core.hold_clock = clock.time
        yield server


async def answer(stream: SyncStream, publish: sync_pb2.Publish) -> sync_pb2.SyncResponse:
    return await stream.expect_reply(stream.send(publish=publish))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_held_publish_coming_back_ends_the_hold(transport: str) -> None:
    """1 is accepted, 2 refused rate_limited (holds the collection), 3 refused
    publish_held with the remaining wait and uncharged; 2 again while the limit still
    refuses it holds again; 2 after the wait is accepted, then 3: stored 1, 2, 3."""
    clock = ManualClock(start=0.0)  # binary fractions of it are exact
    async with held_server(clock) as server, stream_on(server, transport) as stream:
        assert (await answer(stream, publish_request("c", 1))).publish_ack.offset == 1
        limited = (await answer(stream, publish_request("c", 2))).error
        assert limited.reason_code == "rate_limited"
        assert limited.retry_after_ms == 250
        clock.advance(0.125)
        held = (await answer(stream, publish_request("c", 3))).error
        assert (held.code, held.reason_code) == (grpc.StatusCode.ABORTED.value[0], PUBLISH_HELD)
        assert held.retry_after_ms == 125
        assert held.collection_id == "c"
        assert refusals(server, "rate_limited") == 1  # the held one was not charged
        # the held publish comes back too early: refused again, and holds again
        again = (await answer(stream, publish_request("c", 2))).error
        assert again.reason_code == "rate_limited"
        assert (await answer(stream, publish_request("c", 3))).error.reason_code == PUBLISH_HELD
        # another collection is not held
        clock.advance(0.25)
        assert (await answer(stream, publish_request("other", 9))).publish_ack.offset == 1
        clock.advance(0.25)
        assert (await answer(stream, publish_request("c", 2))).publish_ack.offset == 2
        clock.advance(0.25)
        assert (await answer(stream, publish_request("c", 3))).publish_ack.offset == 3
        assert await stored(server, "c") == [b"1", b"2", b"3"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_hold_expires_on_the_hold_clock(transport: str) -> None:
    """A held collection whose refused publish never comes back is released
    HOLD_SECONDS after the refusal (injected clock): then the later publish is stored.
    Publishes without a client_message_id are never held."""
    clock = ManualClock(start=0.0)  # binary fractions of it are exact
    async with held_server(clock) as server, stream_on(server, transport) as stream:
        assert (await answer(stream, publish_request("c", 1))).publish_ack.offset == 1
        assert (await answer(stream, publish_request("c", 2))).error.reason_code == "rate_limited"
        clock.advance(HOLD_SECONDS - 1)
        held = (await answer(stream, publish_request("c", 3))).error
        assert held.reason_code == PUBLISH_HELD
        assert held.retry_after_ms == 1  # the refusal's own wait is long over
        anonymous = publish_request("c", 4)
        anonymous.delta.client_message_id = ""
        assert (await answer(stream, anonymous)).publish_ack.offset == 2
        clock.advance(1.5)
        assert (await answer(stream, publish_request("c", 3))).publish_ack.offset == 3
        assert await stored(server, "c") == [b"1", b"4", b"3"]


@pytest.mark.parametrize("transport", ["grpc", "websocket"])
async def test_client_pipelines_one_collection_and_keeps_its_order(transport: str) -> None:
    """Against a server with publish_holds, the Python client has several publishes of
    one collection in flight (the server held some behind a refused one) and still gets
    offsets 1..100 in publish order through a rate limit of 50/s, burst 10."""
    async with running_server(rate_limit_messages=50.0, rate_limit_burst=0.2) as server:
        url = f"grpc://{server.grpc_address}" if transport == "grpc" else server.ws_url
        config = ClientConfig(heartbeat_interval=30.0, outbox_path=None)
        async with SyncClient([Endpoint.parse(url).url], config) as client:
            await client.connect()
            assert client.server_info is not None and client.server_info.publish_holds
            async with asyncio.timeout(60):
                acks = await asyncio.gather(
                    *(client.publish("rl", f"line {i}".encode()) for i in range(1, 101))
                )
            assert [ack.offset for ack in acks] == list(range(1, 101))
        assert refusals(server, "rate_limited") > 0, "the rate limit refused nothing"
        assert refusals(server, PUBLISH_HELD) > 0, "one publish of the collection at a time"
        assert await stored(server, "rl") == [f"line {i}".encode() for i in range(1, 101)]


@pytest.mark.parametrize("transport", ["grpc", "websocket"])
async def test_client_against_a_server_without_holds_sends_one_publish_per_collection(
    transport: str,
) -> None:
    """A server that does not advertise publish_holds (an older one) gets at most one
    publish of a collection at a time: none is ever held, and the order is kept."""
    async with running_server(rate_limit_messages=50.0, rate_limit_burst=0.2) as server:
        advertised = server.core.server_info

        def older() -> types_pb2.ServerInfo:
            info = advertised()
            info.publish_holds = False
            return info

        server.core.server_info = older  # type: ignore[method-assign]
        url = f"grpc://{server.grpc_address}" if transport == "grpc" else server.ws_url
        config = ClientConfig(heartbeat_interval=30.0, outbox_path=None)
        async with SyncClient([Endpoint.parse(url).url], config) as client:
            await client.connect()
            async with asyncio.timeout(60):
                acks = await asyncio.gather(
                    *(client.publish("rl", f"line {i}".encode()) for i in range(1, 41))
                )
            assert [ack.offset for ack in acks] == list(range(1, 41))
        assert refusals(server, "rate_limited") > 0, "the rate limit refused nothing"
        assert refusals(server, PUBLISH_HELD) == 0


def test_holds_are_capped_per_session() -> None:
    """Beyond `max_holds` collections the least recently used hold ends (its
    collection's later publishes pass); the others still hold."""
    clock = ManualClock(start=0.0)
    holds = PublishHolds(max_holds=2, clock=clock.time)
    refusal = RequestError(grpc.StatusCode.UNAVAILABLE, "broker_unavailable", "", retry_after_ms=5)
    for n, collection_id in enumerate(["a", "b", "c"]):
        holds.refused(publish_request(collection_id, n).delta, refusal)
    assert len(holds) == 2
    holds.check(publish_request("a", 9).delta)  # "a" was dropped: not held
    for collection_id in ("b", "c"):
        with pytest.raises(RequestError) as held:
            holds.check(publish_request(collection_id, 9).delta)
        assert (held.value.reason_code, held.value.retry_after_ms) == (PUBLISH_HELD, 5)
