"""Issue 13, item 6: presence keeps what peers said, field by field, on both brokers.

JOIN records status and user_info; UPDATE replaces status (every request carries the
whole status; "" clears it) and replaces user_info only when it sets one (an UPDATE
without user_info keeps it). GetPresence and the Presence events show the result.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2

from .redis_harness import redis_base_url, redis_url  # noqa: F401  (fixtures)
from .service_harness import SyncStream, running_server

pytestmark = pytest.mark.timeout(60)

JOIN = types_pb2.PRESENCE_ACTION_JOIN
UPDATE = types_pb2.PRESENCE_ACTION_UPDATE
ANN = types_pb2.UserInfo(user_id="u1", username="ann", display_name="Ann")
ANNA = types_pb2.UserInfo(user_id="u1", display_name="Anna")


@pytest.fixture(params=["memory", "redis"])
async def stub(request: pytest.FixtureRequest) -> AsyncIterator[sync_pb2_grpc.SyncServiceAsyncStub]:
    broker = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    async with running_server(broker=broker) as server:
        async with asyncio.timeout(30):  # Redis may take longer than start waits
            await server.core.broker.wait_healthy(True)
        channel = grpc.aio.insecure_channel(server.grpc_address)
        yield sync_pb2_grpc.SyncServiceStub(channel)
        await channel.close(None)


@contextlib.asynccontextmanager
async def peers(
    stub: sync_pb2_grpc.SyncServiceAsyncStub,
) -> AsyncIterator[tuple[SyncStream, SyncStream]]:
    watcher, member = SyncStream(stub), SyncStream(stub)
    try:
        await watcher.welcome()
        await member.welcome()
        await watcher.subscribe("room")
        await member.subscribe("room")
        yield watcher, member
    finally:
        await member.close()
        await watcher.close()


async def only_member(stub: sync_pb2_grpc.SyncServiceAsyncStub) -> types_pb2.Presence:
    present = await stub.GetPresence(sync_pb2.GetPresenceRequest(collection_id="room"))
    assert len(present.members) == 1, present
    return present.members[0]


def set_presence(
    member: SyncStream, action: int, status: str, user_info: types_pb2.UserInfo | None = None
) -> None:
    member.send(
        presence=sync_pb2.SetPresence(
            collection_id="room",
            action=action,  # type: ignore[arg-type]
            status=status,
            user_info=user_info,
        )
    )


async def test_join_with_status_and_user_info_is_listed(
    stub: sync_pb2_grpc.SyncServiceAsyncStub,
) -> None:
    async with peers(stub) as (watcher, member):
        set_presence(member, JOIN, "online", ANN)
        joined = await watcher.expect("peer_join")
        assert joined.peer_join.user_info == ANN
        entry = await only_member(stub)
        assert (entry.peer_id, entry.status, entry.user_info) == (member.peer_id, "online", ANN)
        assert entry.action == JOIN


async def test_update_replaces_status_and_keeps_user_info_it_omits(
    stub: sync_pb2_grpc.SyncServiceAsyncStub,
) -> None:
    async with peers(stub) as (watcher, member):
        set_presence(member, JOIN, "online", ANN)
        await watcher.expect("peer_join")

        set_presence(member, UPDATE, "away")
        event = (await watcher.expect("presence")).presence
        entry = await only_member(stub)
        for shown in (event, entry):
            assert (shown.status, shown.user_info, shown.action) == ("away", ANN, UPDATE)

        set_presence(member, UPDATE, "", ANNA)  # user_info replaced as a whole
        event = (await watcher.expect("presence")).presence
        entry = await only_member(stub)
        for shown in (event, entry):
            assert (shown.status, shown.user_info) == ("", ANNA)
            assert not shown.user_info.HasField("username")

        set_presence(member, JOIN, "back")  # a repeated JOIN updates the same way
        event = (await watcher.expect("presence")).presence
        entry = await only_member(stub)
        for shown in (event, entry):
            assert (shown.status, shown.user_info, shown.action) == ("back", ANNA, JOIN)


async def test_subscribe_join_then_update_keeps_user_info(
    stub: sync_pb2_grpc.SyncServiceAsyncStub,
) -> None:
    watcher, member = SyncStream(stub), SyncStream(stub)
    try:
        await watcher.welcome()
        await member.welcome()
        await watcher.subscribe("room")
        await member.subscribe("room", join_presence=True, user_info=ANN)
        await watcher.expect("peer_join")
        set_presence(member, UPDATE, "typing")
        await watcher.expect("presence")
        entry = await only_member(stub)
        assert (entry.status, entry.user_info) == ("typing", ANN)
    finally:
        await member.close()
        await watcher.close()
