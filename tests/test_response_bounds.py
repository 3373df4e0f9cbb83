"""Answers whose size grows with stored data stay within what a client can receive: a
retained history larger than one message (17 deltas of about 1 MiB each, past gRPC's
default 4 MiB receive limit) comes back in byte-bounded GetHistory slices, the presence
of 5 peers with ~1 MiB statuses in byte-bounded GetPresence answers, and SyncClient's
history() and presence() page through them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
import pytest

from client import DeltaEvent, Endpoint, PresenceChanged, SyncClient
from client.ws_channel import WebSocketChannel
from server.app import SyncwireServer
from server.config import MIB
from server.servicer import HISTORY_READ_CHUNK
from syncwire.v1 import admin_pb2, admin_pb2_grpc, sync_pb2, sync_pb2_grpc, types_pb2

from .redis_harness import redis_base_url, redis_url  # noqa: F401  (fixtures)
from .service_harness import open_channel, running_server

pytestmark = pytest.mark.timeout(60)

DELTAS = 17
PAYLOAD = MIB - 1024  # one publish fits the default 1 MiB message limit
COLLECTION = "edge"


def payload(index: int) -> bytes:
    return bytes([index]) * PAYLOAD


@pytest.fixture
async def server() -> AsyncIterator[SyncwireServer]:
    """One server (default limits) holding 17 x ~1 MiB deltas in COLLECTION."""
    async with running_server() as running:
        async with SyncClient(Endpoint.parse(f"grpc://{running.grpc_address}")) as client:
            for index in range(1, DELTAS + 1):
                assert (await client.publish(COLLECTION, payload(index))).offset == index
        yield running


async def read_all(
    server: SyncwireServer,
    call: Callable[[Any], Awaitable[Any]],
    items: Callable[[Any], Sequence[Any]],
) -> list[Any]:
    """Every answer of a byte-bounded unary call: `call(None)`, then `call(last item of
    the previous answer)` while that answer is `truncated`. Each answer must fit the
    server's message limit and hold at least one item (`items(answer)`)."""
    answers: list[Any] = []
    last = None
    while not answers or answers[-1].truncated:
        assert len(answers) < 100, "the answers do not end"
        answer = await call(last)
        assert answer.ByteSize() <= server.config.max_message_bytes
        assert items(answer), "an answer holds at least one item when any is due"
        answers.append(answer)
        last = items(answer)[-1]
    return answers


async def history_slices(
    server: SyncwireServer, stub: sync_pb2_grpc.SyncServiceAsyncStub
) -> list[sync_pb2.GetHistoryResponse]:
    """Every GetHistory slice of COLLECTION from the start (`read_all`)."""
    return await read_all(
        server,
        lambda last: stub.GetHistory(
            sync_pb2.GetHistoryRequest(
                collection_id=COLLECTION, since_offset=last.offset if last else 0
            ),
            timeout=20,
        ),
        lambda response: response.deltas,
    )


def endpoint_of(server: SyncwireServer, transport: str) -> Endpoint:
    if transport == "grpc":
        return Endpoint.parse(f"grpc://{server.grpc_address}")
    return Endpoint.parse(server.ws_url)


@pytest.mark.parametrize("transport", ["grpc", "websocket"])
async def test_history_pages_through_a_history_larger_than_a_message(
    server: SyncwireServer, transport: str
) -> None:
    async with SyncClient(endpoint_of(server, transport)) as client:
        history = await client.history(COLLECTION)
        assert [delta.offset for delta in history.deltas] == list(range(1, DELTAS + 1))
        assert all(delta.delta == payload(delta.offset) for delta in history.deltas)
        assert history.offset == DELTAS and not history.truncated
        assert history.recovery == sync_pb2.RECOVERY_STATUS_RECOVERED
        assert history.oldest_offset == 1
        # A limit is still the most that comes back, across pages too.
        limited = await client.history(COLLECTION, since_offset=2, limit=6)
        assert [delta.offset for delta in limited.deltas] == list(range(3, 9))
        assert not limited.truncated


@pytest.mark.parametrize("transport", ["grpc", "ws"])
async def test_raw_get_history_returns_bounded_slices_to_continue_from(
    server: SyncwireServer, transport: str
) -> None:
    async with open_channel(server, transport) as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        slices = await history_slices(server, stub)
    assert all(response.offset == DELTAS for response in slices)
    assert all(response.recovery == sync_pb2.RECOVERY_STATUS_RECOVERED for response in slices)
    offsets = [delta.offset for response in slices for delta in response.deltas]
    assert offsets == list(range(1, DELTAS + 1))
    assert 1 < len(slices) <= DELTAS


@pytest.mark.parametrize("transport", ["grpc", "websocket"])
async def test_subscribe_replays_a_history_larger_than_a_message(
    server: SyncwireServer, transport: str
) -> None:
    """The Subscribe replay sends one message per delta, so it was never bounded by the
    whole history's size; kept here beside GetHistory so the two stay alike."""
    async with SyncClient(endpoint_of(server, transport)) as client:
        offsets: list[int] = []
        events = client.events()
        await client.subscribe(COLLECTION, last_offset=0)
        async with asyncio.timeout(30):
            async for event in events:
                if isinstance(event, DeltaEvent):
                    assert event.delta.delta == payload(event.delta.offset)
                    offsets.append(event.delta.offset)
                    if len(offsets) == DELTAS:
                        break
        assert offsets == list(range(1, DELTAS + 1))


PEERS = 5
STATUS = MIB - 4096  # one SetPresence fits the default 1 MiB message limit


def status_of(index: int) -> str:
    return chr(ord("a") + index) * STATUS


@pytest.fixture
async def present() -> AsyncIterator[tuple[SyncwireServer, set[str]]]:
    """A server (default limits) where PEERS peers have joined COLLECTION's presence with
    ~1 MiB statuses; yields it and their peer ids once an observer has seen every status."""
    async with running_server() as running, contextlib.AsyncExitStack() as stack:
        endpoint = Endpoint.parse(f"grpc://{running.grpc_address}")
        observer = await stack.enter_async_context(SyncClient(endpoint))
        events = observer.events()
        await observer.subscribe(COLLECTION)
        peers = [await stack.enter_async_context(SyncClient(endpoint)) for _ in range(PEERS)]
        for index, peer in enumerate(peers):
            await peer.subscribe(COLLECTION, join_presence=True)
            peer.set_presence(COLLECTION, status=status_of(index))
        expected = {peer.peer_id: status_of(index) for index, peer in enumerate(peers)}
        seen: dict[str, str] = {}
        async with asyncio.timeout(30):
            async for event in events:
                if isinstance(event, PresenceChanged):
                    seen[event.presence.peer_id] = event.presence.status
                    if seen == expected:
                        break
        yield running, set(expected)


@pytest.mark.parametrize("transport", ["grpc", "websocket"])
async def test_presence_pages_through_more_than_a_message(
    present: tuple[SyncwireServer, set[str]], transport: str
) -> None:
    server, peer_ids = present
    async with SyncClient(endpoint_of(server, transport)) as client:
        members = await client.presence(COLLECTION)
        assert {member.peer_id for member in members} == peer_ids
        assert sorted(len(member.status) for member in members) == [STATUS] * PEERS


@pytest.mark.parametrize("transport", ["grpc", "ws"])
async def test_raw_get_presence_returns_bounded_answers_to_continue_from(
    present: tuple[SyncwireServer, set[str]], transport: str
) -> None:
    server, peer_ids = present
    async with open_channel(server, transport) as channel:
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        answers = await read_all(
            server,
            lambda last: stub.GetPresence(
                sync_pb2.GetPresenceRequest(
                    collection_id=COLLECTION, after_peer_id=last.peer_id if last else ""
                ),
                timeout=20,
            ),
            lambda response: response.members,
        )
    seen = [member.peer_id for response in answers for member in response.members]
    assert seen == sorted(peer_ids)
    assert 1 < len(answers) <= PEERS


LISTED = 12
ADMIN = "admin-token-for-tests"


async def test_list_collections_answers_fit_the_callers_receive_limit() -> None:
    """A server of 2 KiB messages answers ListCollections in slices of at most 1 KiB of
    entries, so a caller that receives no more than 2 KiB gets every one of 12 collections
    with 200-byte ids (2.6 KB in one answer before), and `syncwire admin collections`
    lists them all."""
    collections = [f"{index:02d}" + "c" * 198 for index in range(LISTED)]
    async with (
        running_server(max_message_bytes=2048, admin_token=ADMIN) as server,
        SyncClient(Endpoint.parse(f"grpc://{server.grpc_address}")) as client,
    ):
        for collection in collections:
            await client.subscribe(collection)
        options = [("grpc.max_receive_message_length", 2048)]
        async with grpc.aio.insecure_channel(server.grpc_address, options=options) as channel:
            stub = admin_pb2_grpc.AdminServiceStub(channel)
            metadata = (("authorization", f"Bearer {ADMIN}"),)
            answers = await read_all(
                server,
                lambda last: stub.ListCollections(
                    admin_pb2.ListCollectionsRequest(
                        after_collection_id=last.collection_id if last else ""
                    ),
                    metadata=metadata,
                    timeout=20,
                ),
                lambda response: response.collections,
            )
        listed = [entry.collection_id for answer in answers for entry in answer.collections]
        assert listed == collections
        assert all(entry.node_subscribers == 1 for a in answers for entry in a.collections)
        assert len(answers) > 1
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "client.cli",
            "admin",
            "collections",
            "--json",
            "--server",
            f"grpc://{server.grpc_address}",
            stdout=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("SYNCWIRE_")}
            | {"SYNCWIRE_ADMIN_TOKEN": ADMIN},
        )
        async with asyncio.timeout(60):
            out, _ = await process.communicate()
        assert process.returncode == 0
        shown = json.loads(out)["collections"]
        assert [entry["collection_id"] for entry in shown] == collections


@pytest.mark.parametrize("broker", ["memory", "redis"])
async def test_history_of_many_small_deltas_is_one_slice_read_in_chunks(
    request: pytest.FixtureRequest, broker: str
) -> None:
    """100 small deltas (more than one broker read of HISTORY_READ_CHUNK) come back in
    one GetHistory answer, in order, whatever the broker; a limit still bounds them."""
    url = "memory://" if broker == "memory" else request.getfixturevalue("redis_url")
    count = 3 * HISTORY_READ_CHUNK + 4
    async with (
        running_server(broker=url) as server,
        grpc.aio.insecure_channel(server.grpc_address) as channel,
    ):
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        for index in range(1, count + 1):
            delta = types_pb2.Delta(collection_id=COLLECTION, delta=b"%d" % index)
            await stub.Publish(sync_pb2.PublishRequest(delta=delta), timeout=20)
        whole = await stub.GetHistory(
            sync_pb2.GetHistoryRequest(collection_id=COLLECTION), timeout=20
        )
        assert [delta.delta for delta in whole.deltas] == [b"%d" % i for i in range(1, count + 1)]
        assert not whole.truncated and whole.offset == count
        limited = await stub.GetHistory(
            sync_pb2.GetHistoryRequest(
                collection_id=COLLECTION, since_offset=5, limit=HISTORY_READ_CHUNK + 3
            ),
            timeout=20,
        )
        offsets = [delta.offset for delta in limited.deltas]
        assert offsets == list(range(6, 6 + HISTORY_READ_CHUNK + 3))
        assert not limited.truncated


async def test_websocket_answers_fit_the_receive_limit_the_client_announced() -> None:
    """A WebSocket client announcing a 256 KiB receive limit (syncwire-max-message-bytes)
    gets history slices within it from a server of 1 MiB messages: 8 deltas of 100 KB
    (800 KB in one slice before) come in several."""
    limit = 256 * 1024
    async with running_server() as server:
        async with WebSocketChannel(server.ws_url, max_receive_message_bytes=limit) as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            for index in range(1, 9):
                delta = types_pb2.Delta(collection_id=COLLECTION, delta=bytes([index]) * 100_000)
                await stub.Publish(sync_pb2.PublishRequest(delta=delta), timeout=20)
            slices = await history_slices(server, stub)
    assert all(response.ByteSize() <= limit for response in slices)
    offsets = [delta.offset for response in slices for delta in response.deltas]
    assert offsets == list(range(1, 9))
