"""Issue 18, the server API (syncwire.v1.AdminService): guarded by its own credential;
disconnect-user, unsubscribe-user and revoke-token take effect on every transport
(native gRPC, WebSocket framing, legacy JSON) and on every node (two nodes on one real
Redis; one node on the memory broker); presence per user counts a three-connection user
once; collections are counted per node and cluster-wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from server.admin_commands import CONTROL_COLLECTION
from server.admin_service import ADMIN_SERVICE_NAME
from server.app import SyncwireServer
from server.hooks import Caller, ConnectResult, Hooks
from syncwire.v1 import admin_pb2, admin_pb2_grpc, sync_pb2, sync_pb2_grpc, types_pb2
from tests.legacy_ws_client import LegacyClient

from .redis_harness import redis_base_url, redis_url  # noqa: F401  (fixtures)
from .security_harness import SECRET, bearer, make_token, trailer
from .service_harness import SyncStream, open_channel, poll_until
from .service_harness import test_config as make_config
from .test_security_legacy import refused, with_token

pytestmark = pytest.mark.timeout(90)

ADMIN = "admin-token-for-tests"
ROOM = "room"


@pytest.fixture(params=["memory", "redis"])
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[list[SyncwireServer]]:
    """One node on the memory broker; two nodes sharing one Redis."""
    if request.param == "memory":
        brokers = ["memory://"]
    else:
        brokers = [request.getfixturevalue("redis_url")] * 2
    started: list[SyncwireServer] = []
    try:
        for broker in brokers:
            config = make_config(
                broker=broker, auth_secret=SECRET, admin_token=ADMIN, heartbeat_interval=0.2
            )
            server = SyncwireServer(config)
            await server.start()
            started.append(server)
            async with asyncio.timeout(30):
                await server.core.broker.wait_healthy(True)
        await poll_until(
            lambda: all(server.core.admin.attached for server in started), "admin commands followed"
        )
        yield started
    finally:
        for server in started:
            await server.stop(grace=1.0)


@contextlib.asynccontextmanager
async def admin_stub(
    server: SyncwireServer, transport: str = "grpc"
) -> AsyncIterator[admin_pb2_grpc.AdminServiceAsyncStub]:
    async with open_channel(server, transport) as channel:
        yield admin_pb2_grpc.AdminServiceStub(channel)


class Fleet:
    """Connections of users across nodes and transports."""

    def __init__(self) -> None:
        self.stack = contextlib.AsyncExitStack()
        self.streams: list[tuple[str, SyncStream]] = []
        self.legacy: list[tuple[str, LegacyClient]] = []

    async def stream(
        self, server: SyncwireServer, transport: str, user: str, jti: str = "", **claims: Any
    ) -> SyncStream:
        channel = await self.stack.enter_async_context(open_channel(server, transport))
        token = make_token(sub=user, jti=jti or f"{user}-{len(self.streams)}", **claims)
        stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel), metadata=bearer(token))
        self.stack.push_async_callback(stream.close)
        await stream.welcome()
        await stream.subscribe(ROOM, join_presence=True)
        self.streams.append((user, stream))
        return stream

    async def legacy_client(self, server: SyncwireServer, user: str, jti: str = "") -> LegacyClient:
        token = make_token(sub=user, jti=jti or f"{user}-legacy")
        client = await LegacyClient.open(with_token(server.ws_url, token, ROOM))
        self.stack.push_async_callback(client.ws.close)

        def subscribed() -> bool:  # the gateway subscribes its home collection on its own
            sessions = server.core.registry.sessions()
            return any(s.peer_id == client.peer_id and ROOM in s.subscriptions for s in sessions)

        await poll_until(subscribed, "the legacy client follows its home collection")
        self.legacy.append((user, client))
        return client


@contextlib.asynccontextmanager
async def fleet() -> AsyncIterator[Fleet]:
    connections = Fleet()
    async with connections.stack:
        yield connections


async def ann_everywhere(nodes: list[SyncwireServer], connections: Fleet, jti: str = "") -> None:
    """Ann on gRPC (first node), WebSocket framing and legacy JSON (last node)."""
    await connections.stream(nodes[0], "grpc", "ann", jti=jti)
    await connections.stream(nodes[-1], "ws", "ann", jti=jti)
    await connections.legacy_client(nodes[-1], "ann", jti=jti)


def admin_metadata() -> tuple[tuple[str, str], ...]:
    return bearer(ADMIN)


async def test_the_admin_api_takes_only_the_admin_credential(nodes: list[SyncwireServer]) -> None:
    for transport in ("grpc", "ws"):
        async with admin_stub(nodes[0], transport) as admin:
            request = admin_pb2.ListCollectionsRequest()
            for metadata in ((), bearer(make_token(sub="ann")), bearer("wrong")):
                with pytest.raises(grpc.aio.AioRpcError) as denied:
                    await admin.ListCollections(request, metadata=metadata)
                assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
            answer = await admin.ListCollections(request, metadata=admin_metadata())
            assert answer.server_id == nodes[0].core.server_id
    config = make_config()  # no admin token: the API refuses everything
    server = SyncwireServer(config)
    await server.start()
    try:
        async with admin_stub(server) as admin:
            with pytest.raises(grpc.aio.AioRpcError) as off:
                await admin.ListCollections(
                    admin_pb2.ListCollectionsRequest(), metadata=bearer(ADMIN)
                )
            assert trailer(off.value, "syncwire-reason") == "admin_disabled"
        # The CLI blames the server's setting, not the token given.
        refused = await syncwire(
            "admin", "collections", "--server", f"grpc://{server.grpc_address}", exit_code=1
        )
        assert "the server API is off: start the server with --admin-token" in refused
        assert "check the token" not in refused
    finally:
        await server.stop(grace=1.0)


async def test_disconnect_user_ends_every_connection_on_every_node(
    nodes: list[SyncwireServer],
) -> None:
    async with fleet() as connections:
        await ann_everywhere(nodes, connections)
        bob = await connections.stream(nodes[-1], "grpc", "bob")
        async with admin_stub(nodes[0]) as admin:
            await admin.Disconnect(
                admin_pb2.DisconnectRequest(user_id="ann", reason="maintenance", reconnect=True),
                metadata=admin_metadata(),
            )
        for user, stream in connections.streams:
            if user != "ann":
                continue
            disconnect = await stream.expect("disconnect")
            assert (disconnect.disconnect.reason, disconnect.disconnect.reconnect) == (
                "maintenance",
                True,
            )
            ended = await asyncio.wait_for(stream.ended, 10)
            assert ended is not None and ended.code() == grpc.StatusCode.UNAVAILABLE
        for _, client in connections.legacy:
            closed = await client.closed()
            assert (closed.code, closed.reason) == (1001, "maintenance")
        assert (await bob.publish(ROOM, b"still here")).offset >= 1
        for node in nodes:
            assert {s.user_id for s in node.core.registry.sessions()} <= {"bob"}


async def test_unsubscribe_user_ends_the_subscription_on_every_node(
    nodes: list[SyncwireServer],
) -> None:
    async with fleet() as connections:
        await ann_everywhere(nodes, connections)
        async with admin_stub(nodes[-1], "ws") as admin:
            await admin.UnsubscribeUser(
                admin_pb2.UnsubscribeUserRequest(user_id="ann", collection_id=ROOM),
                metadata=admin_metadata(),
            )
        for _, stream in connections.streams:
            error = (await stream.expect("error")).error
            assert (error.code, error.reason_code, error.collection_id) == (7, "unsubscribed", ROOM)
        for _, client in connections.legacy:
            message = await client.recv()
            while message["type"] != "error":
                message = await client.recv()
            assert message["code"] == "unsubscribed"
        for node in nodes:
            assert all(ROOM not in s.subscriptions for s in node.core.registry.sessions())
            assert len(node.core.registry) > 0  # the connections themselves stay


@pytest.mark.parametrize("by", ["jti", "user"])
async def test_a_revoked_token_is_refused_on_every_transport_and_node(
    nodes: list[SyncwireServer], by: str
) -> None:
    async with fleet() as connections:
        await ann_everywhere(nodes, connections, jti="ann-token")
        until = Timestamp()
        until.FromSeconds(int(time.time()) + 600)
        request = (
            admin_pb2.RevokeTokenRequest(jti="ann-token", until=until)
            if by == "jti"
            else admin_pb2.RevokeTokenRequest(user_id="ann", until=until)
        )
        async with admin_stub(nodes[0]) as admin:
            await admin.RevokeToken(request, metadata=admin_metadata())
        for _, stream in connections.streams:
            ended = await asyncio.wait_for(stream.ended, 10)
            assert ended is not None and ended.code() == grpc.StatusCode.UNAUTHENTICATED
        for _, client in connections.legacy:
            assert (await client.closed()).code == 4401
        revoked = make_token(sub="ann", jti="ann-token")
        other = make_token(sub="ann", jti="another-token")
        for node in nodes:
            for transport in ("grpc", "ws"):
                async with open_channel(node, transport) as channel:
                    stub = sync_pb2_grpc.SyncServiceStub(channel)
                    presence = sync_pb2.GetPresenceRequest(collection_id=ROOM)
                    with pytest.raises(grpc.aio.AioRpcError) as refused_call:
                        await stub.GetPresence(presence, metadata=bearer(revoked))
                    assert trailer(refused_call.value, "syncwire-reason") == "token_revoked"
                    if by == "jti":  # the user's other tokens still work
                        await stub.GetPresence(presence, metadata=bearer(other))
                    else:
                        with pytest.raises(grpc.aio.AioRpcError):
                            await stub.GetPresence(presence, metadata=bearer(other))
            closed = await refused(with_token(node.ws_url, revoked, ROOM))
            assert closed.code == 4401


async def test_presence_per_user_counts_a_three_connection_user_once(
    nodes: list[SyncwireServer],
) -> None:
    async with fleet() as connections:
        for transport in ("grpc", "ws", "grpc"):
            await connections.stream(nodes[-1], transport, "ann")
        await connections.stream(nodes[0], "ws", "bob")
        async with admin_stub(nodes[0]) as admin:
            answer = await admin.GetUserPresence(
                admin_pb2.GetUserPresenceRequest(collection_id=ROOM), metadata=admin_metadata()
            )
            assert [(u.user_id, len(u.peer_ids)) for u in answer.users] == [("ann", 3), ("bob", 1)]
            ann_peers = {s.peer_id for user, s in connections.streams if user == "ann"}
            assert set(answer.users[0].peer_ids) == ann_peers

            async def counted() -> admin_pb2.ListCollectionsResponse:
                return await admin.ListCollections(
                    admin_pb2.ListCollectionsRequest(), metadata=admin_metadata()
                )

            listing = await counted()
            assert [(c.collection_id, c.node_subscribers) for c in listing.collections] == [
                (ROOM, 1 if len(nodes) > 1 else 4)
            ]
            # Other nodes report every heartbeat interval: the cluster-wide count follows.
            async with asyncio.timeout(20):
                while (listing.nodes, listing.collections[0].cluster_subscribers) != (
                    len(nodes),
                    4,
                ):
                    await asyncio.sleep(0.05)
                    listing = await counted()


async def syncwire(*args: str, admin_token: str = ADMIN, exit_code: int = 0) -> str:
    """`syncwire ARGS` in a subprocess (the server runs in this event loop) with
    SYNCWIRE_ADMIN_TOKEN=`admin_token`; its stdout, or its stderr when it is expected to
    fail. Fails unless it exits with `exit_code`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("SYNCWIRE_")}
        | {"SYNCWIRE_ADMIN_TOKEN": admin_token},
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == exit_code, (args, out.decode(), err.decode())
    return out.decode() if exit_code == 0 else err.decode()


async def test_the_admin_cli(nodes: list[SyncwireServer], tmp_path: Path) -> None:
    server = ["--server", f"grpc://{nodes[0].grpc_address}"]
    async with fleet() as connections:
        ann = await connections.stream(nodes[-1], "ws", "ann")
        await ann.publish(ROOM, b"one")
        listing = await syncwire("admin", "presence", ROOM, *server, "--json")
        assert json.loads(listing)["users"][0]["user_id"] == "ann"
        listed = await syncwire("admin", "collections", *server)
        assert ROOM in listed
        assert f"CLUSTER ({len(nodes)} node{'s' if len(nodes) > 1 else ''})" in listed
        refused = await syncwire("admin", "collections", *server, admin_token="wrong", exit_code=1)
        assert "invalid admin token" in refused and "SYNCWIRE_ADMIN_TOKEN" in refused
        assert "--token or" not in refused
        state = tmp_path / "state.bin"
        state.write_bytes(b"the state at 1")
        await syncwire("admin", "snapshot", ROOM, "--put", str(state), "--offset", "1", *server)
        copy = tmp_path / "copy.bin"
        shown = await syncwire("admin", "snapshot", ROOM, "--out", str(copy), *server)
        assert "offset 1" in shown and copy.read_bytes() == b"the state at 1"
        removed = await syncwire("admin", "remove-history", ROOM, *server)
        assert "removed 1 delta(s)" in removed
        after = await nodes[0].core.broker.history(ROOM, 0, "", 10)
        assert (after.offset, after.events) == (1, [])
        await syncwire("admin", "unsubscribe", ROOM, "--user", "ann", *server)
        assert (await ann.expect("error")).error.reason_code == "unsubscribed"
        await syncwire("admin", "disconnect", "--user", "ann", "--no-reconnect", *server)
        disconnect = (await ann.expect("disconnect")).disconnect
        assert disconnect.reconnect is False
        await syncwire("admin", "revoke", "--user", "ann", "--for", "60", *server)
        with pytest.raises(AssertionError):
            await connections.stream(nodes[-1], "grpc", "ann")


async def test_a_node_started_later_refuses_tokens_revoked_before(
    nodes: list[SyncwireServer],
) -> None:
    if nodes[0].config.broker == "memory://":
        pytest.skip("the memory broker has one node, and it forgets everything at exit")
    until = Timestamp()
    until.FromSeconds(int(time.time()) + 600)
    async with admin_stub(nodes[0]) as admin:
        request = admin_pb2.RevokeTokenRequest(jti="old-token", until=until)
        await admin.RevokeToken(request, metadata=admin_metadata())
    broker = nodes[0].core.broker
    stored: list[object] = []

    async def list_stored() -> bool:
        stored[:] = [await broker.get_snapshot(CONTROL_COLLECTION)]
        return stored[0] is not None

    async with asyncio.timeout(20):  # the list is stored by a background task
        while not await list_stored():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    late = SyncwireServer(nodes[0].config)
    await late.start()
    try:
        await poll_until(lambda: late.core.admin.attached, "the late node follows admin commands")
        async with open_channel(late, "ws") as channel:
            stub = sync_pb2_grpc.SyncServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused_call:
                await stub.GetPresence(
                    sync_pb2.GetPresenceRequest(collection_id=ROOM),
                    metadata=bearer(make_token(sub="ann", jti="old-token")),
                )
            assert trailer(refused_call.value, "syncwire-reason") == "token_revoked"
    finally:
        await late.stop(grace=1.0)


async def test_bad_admin_requests_get_a_precise_status(nodes: list[SyncwireServer]) -> None:
    until = Timestamp()
    until.FromSeconds(int(time.time()) + 60)
    bad: list[tuple[str, Any, grpc.StatusCode]] = [
        ("Disconnect", admin_pb2.DisconnectRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (
            "Disconnect",
            admin_pb2.DisconnectRequest(peer_id="p", user_id="u"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        ("RevokeToken", admin_pb2.RevokeTokenRequest(jti="j"), grpc.StatusCode.INVALID_ARGUMENT),
        (
            "RevokeToken",
            admin_pb2.RevokeTokenRequest(until=until),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "UnsubscribeUser",
            admin_pb2.UnsubscribeUserRequest(user_id="ann"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            "PutSnapshot",
            admin_pb2.PutSnapshotRequest(
                snapshot=sync_pb2.PutSnapshot(collection_id=ROOM, offset=5, data=b"s")
            ),
            grpc.StatusCode.OUT_OF_RANGE,
        ),
    ]
    async with admin_stub(nodes[0], "ws") as admin:
        for method, request, code in bad:
            with pytest.raises(grpc.aio.AioRpcError) as refused_call:
                await getattr(admin, method)(request, metadata=admin_metadata())
            assert refused_call.value.code() == code, (method, request)
        # The node carries on.
        empty = await admin.GetSnapshot(
            admin_pb2.GetSnapshotRequest(collection_id=ROOM), metadata=admin_metadata()
        )
        assert not empty.HasField("snapshot")


async def test_remove_history_compacts_behind_a_snapshot(nodes: list[SyncwireServer]) -> None:
    core = nodes[0].core
    for collection_id in ("compacted", "dropped"):
        for n in range(1, 6):
            await core.publish(types_pb2.Delta(collection_id=collection_id, delta=b"%d" % n))
    await core.put_snapshot("compacted", 5, b"state@5")
    async with admin_stub(nodes[-1]) as admin:
        for collection_id in ("compacted", "dropped"):
            answer = await admin.RemoveHistory(
                admin_pb2.RemoveHistoryRequest(collection_id=collection_id),
                metadata=admin_metadata(),
            )
            assert answer.removed == 5
    async with open_channel(nodes[-1], "grpc") as channel:
        stream = SyncStream(
            sync_pb2_grpc.SyncServiceStub(channel), metadata=bearer(make_token(sub="ann"))
        )
        try:
            await stream.welcome()
            compacted = await stream.subscribe("compacted", last_offset=0)
            assert (compacted.recovery, compacted.snapshot_offset, compacted.replayed) == (
                sync_pb2.RECOVERY_STATUS_SNAPSHOT,
                5,
                0,
            )
            assert (await stream.expect("snapshot")).snapshot.data == b"state@5"
            dropped = await stream.subscribe("dropped", last_offset=0)
            assert (dropped.recovery, dropped.offset, dropped.replayed) == (
                sync_pb2.RECOVERY_STATUS_GAP_TOO_OLD,
                5,
                0,
            )
        finally:
            await stream.close()


class UsersByTransport(Hooks):
    """Authentication off, the connect hook names the user: gRPC and legacy JSON callers
    are ann, WebSocket framing callers bob."""

    async def on_connect(self, caller: Caller) -> ConnectResult | None:
        user = "bob" if caller.transport == "websocket" else "ann"
        return ConnectResult(types_pb2.UserInfo(user_id=user))


async def test_revoking_a_user_named_by_the_connect_hook() -> None:
    """Without authentication the user is the connect hook's user id: revoking it ends
    that user's sessions on every transport (UNAUTHENTICATED "user revoked", legacy
    close 4401), counts them, and refuses the user's new connects; another user carries
    on and connects."""
    config = make_config(admin_token=ADMIN, heartbeat_interval=0.2)
    server = SyncwireServer(config, hooks=UsersByTransport())
    await server.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            streams: dict[str, SyncStream] = {}
            for transport in ("grpc", "ws"):
                channel = await stack.enter_async_context(open_channel(server, transport))
                stream = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
                stack.push_async_callback(stream.close)
                await stream.welcome()
                await stream.subscribe(ROOM, join_presence=True)
                streams[transport] = stream
            legacy = await LegacyClient.open(f"{server.ws_url}/?room_id={ROOM}")
            stack.push_async_callback(legacy.ws.close)
            assert sorted(s.user_id for s in server.core.registry.sessions()) == [
                "ann",
                "ann",
                "bob",
            ]
            until = Timestamp()
            until.FromSeconds(int(time.time()) + 600)
            async with admin_stub(server) as admin:
                answer = await admin.RevokeToken(
                    admin_pb2.RevokeTokenRequest(user_id="ann", until=until),
                    metadata=admin_metadata(),
                )
            assert answer.disconnected_here == 2
            ended = await asyncio.wait_for(streams["grpc"].ended, 10)
            assert ended is not None and ended.code() == grpc.StatusCode.UNAUTHENTICATED
            assert ended.details() == "user revoked"
            assert (await legacy.closed()).code == 4401
            await streams["ws"].publish(ROOM, b"bob carries on")
            for transport, user in (("grpc", "ann"), ("ws", "bob")):
                channel = await stack.enter_async_context(open_channel(server, transport))
                again = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
                stack.push_async_callback(again.close)
                if user == "bob":
                    await again.welcome()
                    continue
                refusal = await asyncio.wait_for(again.ended, 10)
                assert refusal is not None and refusal.code() == grpc.StatusCode.UNAUTHENTICATED
                assert trailer(refusal, "syncwire-reason") == "token_revoked"
            closed = await refused(f"{server.ws_url}/?room_id={ROOM}")
            assert closed.code == 4401
    finally:
        await server.stop(grace=1.0)


async def _reflected(channel: grpc.aio.Channel) -> tuple[set[str], str]:
    """The services reflection lists, and the file it names for AdminService ("" when
    it knows none)."""
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=ADMIN_SERVICE_NAME),
    ]
    answers = [answer async for answer in reflect.ServerReflectionInfo(iter(requests))]
    names = {service.name for service in answers[0].list_services_response.service}
    files = answers[1].file_descriptor_response.file_descriptor_proto
    return names, descriptor_pb2.FileDescriptorProto.FromString(files[0]).name if files else ""


@pytest.mark.parametrize("transport", ["grpc", "ws"])
async def test_reflection_lists_the_admin_service_when_it_is_enabled(transport: str) -> None:
    """With --admin-token, reflection lists syncwire.v1.AdminService next to SyncService,
    health and reflection (so grpcurl and friends find it) and describes it; without,
    the service refuses everything and reflection does not list it."""
    for admin_token, listed in ((ADMIN, True), ("", False)):
        config = make_config(admin_token=admin_token)
        server = SyncwireServer(config)
        await server.start()
        try:
            async with open_channel(server, transport) as channel, asyncio.timeout(20):
                names, admin_file = await _reflected(channel)
        finally:
            await server.stop(grace=1.0)
        expected = {
            "syncwire.v1.SyncService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        assert names == expected | ({ADMIN_SERVICE_NAME} if listed else set())
        assert admin_file == "syncwire/v1/admin.proto"
