"""Legacy JSON clients on the real WebSocket listener: every fixture over real sockets.

Clients here are raw WebSockets offering no subprotocol and speaking JSON text frames
only (`tests.legacy_ws_client`). Each valid client fixture must produce exactly its
documented rebroadcast, ack or silence; each invalid one an `error` to the sender alone,
with the connection kept and the next message going through. Ordering is checked with
probes (a `sync` whose rebroadcast marks "everything before has arrived"), never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server import __version__
from server.app import SyncwireServer
from server.legacy import parse_rfc3339
from server.legacy_gateway import ROOM_ID_RULE, LegacyRenderCache
from server.logs import JsonFormatter
from syncwire.v1 import sync_pb2, sync_pb2_grpc, types_pb2
from tests.legacy_strategies import canonical, exact_json
from tests.legacy_ws_client import JsonObject, LegacyClient, open_pair
from tests.service_harness import SyncStream, open_channel, running_server
from tests.test_legacy_fixtures import (
    C2S,
    FIXTURES,
    INDEX,
    _binary_garbage,
    _normalized,
    _oversize_payload,
)

pytestmark = pytest.mark.timeout(30)

ROOM_SAFE: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
PRESENCE_ACTION_WORDS: Final = {"Join": "connected", "Leave": "disconnected", "Update": ""}
"""What a wrapper PresenceAction reads as in shape A (an UPDATE carries no status)."""
REPLICA: Final = "550e8400-e29b-41d4-a716-446655440000"
WS_MAX_SIZE_OVERHEAD: Final = 64 * 1024
"""The listener's WebSocket max_size is max_message_bytes plus this batching headroom."""


def _fixture(section: str, name: str) -> bytes:
    return (FIXTURES / section / name).read_bytes()


def _client_fixtures() -> list[str]:
    return sorted(name for name, row in INDEX["valid"].items() if C2S in row.directions)


def _refused_server_fixtures() -> list[str]:
    """Server-only valid fixtures that a client may not send (README 6): shape A welcome,
    binary_ack and error are unknown types; a wrapper Welcome or BinaryAck is invalid."""
    names = []
    for name, row in INDEX["valid"].items():
        if C2S in row.directions:
            continue
        value = exact_json(_fixture("valid", name))
        assert isinstance(value, dict)
        if row.shape == "B" or value["type"] in ("welcome", "binary_ack", "error"):
            names.append(name)
    return sorted(names)


def _invalid_fixtures() -> list[str]:
    return sorted(name for name in INDEX["invalid"] if not name.endswith(".note.txt"))


@pytest.fixture
async def server() -> AsyncIterator[SyncwireServer]:
    async with running_server() as running:
        yield running


class _Captured(logging.Handler):
    """Formats records as they are emitted, so the connection's log context is read in
    the connection's own task."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def gateway_log() -> Iterator[_Captured]:
    logger = logging.getLogger("server.legacy_gateway")
    handler = _Captured()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _assert_fresh_time(text: object) -> None:
    assert isinstance(text, str)
    stamp = parse_rfc3339(text)
    assert stamp is not None, text
    assert text.endswith("+00:00"), text
    now = Timestamp()
    now.GetCurrentTime()
    assert abs(now.seconds - stamp.seconds) <= 30, text


def _assert_same_json(actual: object, expected: object) -> None:
    assert canonical(actual) == canonical(expected), (actual, expected)


async def _expect_sync(client: LegacyClient, sender: str, data: object) -> JsonObject:
    """The rebroadcast of a client `sync`: sender's server id, data exact, fresh time."""
    message = await client.recv()
    assert set(message) == {"type", "peer_id", "data", "timestamp"}, message
    assert message["type"] == "sync" and message["peer_id"] == sender
    _assert_same_json(message["data"], data)
    _assert_fresh_time(message["timestamp"])
    return message


# --- valid client fixtures ---------------------------------------------------------------


@pytest.mark.parametrize("name", _client_fixtures())
async def test_valid_client_fixture_gets_its_documented_handling(
    server: SyncwireServer, name: str
) -> None:
    raw = _fixture("valid", name)
    value = exact_json(raw)
    assert isinstance(value, dict)
    delta_body = value.get("message", {}).get("Delta") if "type" not in value else None
    room_observer: LegacyClient | None = None
    if delta_body is not None and set(delta_body["collection_id"]) <= ROOM_SAFE:
        room_observer = await LegacyClient.open(
            f"{server.ws_url}/sync?room_id={delta_body['collection_id']}"
        )
    sender, observer = await open_pair(server.ws_url)

    await sender.send_text(raw)
    probe = await sender.probe()

    if "type" in value:
        await _check_tagged_handling(value, sender, observer)
    else:
        await _check_wrapper_handling(server, value, sender, observer)
    for client in (sender, observer):
        await client.expect_probe(probe, sender.peer_id)
    if room_observer is not None:  # a shape A peer of the Delta's collection: a Delta body
        assert delta_body is not None
        await _expect_sync(room_observer, sender.peer_id, _normalized(delta_body))
        probe = await room_observer.probe()
        await room_observer.expect_probe(probe, room_observer.peer_id)
    for opened in (sender, observer, room_observer):
        if opened is not None:
            await opened.ws.close()


async def _check_tagged_handling(
    value: JsonObject, sender: LegacyClient, observer: LegacyClient
) -> None:
    kind = value["type"]
    for client in (sender, observer):  # the sender is a peer too: it gets its own echo
        if kind == "sync":
            await _expect_sync(client, sender.peer_id, value["data"])
        elif kind == "presence":
            message = await client.expect_presence(sender.peer_id, value["action"])
            _assert_fresh_time(message["timestamp"])
        else:
            assert kind == "heartbeat"  # liveness only: nothing before the probe


async def _check_wrapper_handling(
    server: SyncwireServer,
    value: JsonObject,
    sender: LegacyClient,
    observer: LegacyClient,
) -> None:
    ((variant, body),) = value["message"].items()
    if variant == "Delta":
        # The sender spoke the wrapper, so its copy comes back in wrapper form; the home
        # observer is in another collection and sees nothing.
        wrapped = {"version": 1, "message": {"Delta": _normalized(body)}, "message_id": None}
        _assert_same_json(await sender.recv(), wrapped)
        return
    if variant == "Heartbeat":
        return
    if variant == "PeerJoin":
        action = "connected"
    elif variant == "PeerLeave":
        action = "disconnected"
    else:
        assert variant == "Presence", variant
        action = PRESENCE_ACTION_WORDS[body["action"]]
    for client in (sender, observer):
        await client.expect_presence(sender.peer_id, action)
    if variant == "PeerJoin":
        await _check_presence_user_info(server, sender.peer_id, body.get("user_info"))


async def _check_presence_user_info(
    server: SyncwireServer, peer_id: str, user_info: JsonObject | None
) -> None:
    """A typed backend reading presence sees the legacy peer's user_info as sent."""
    async with open_channel(server, "grpc") as channel:
        reply = await sync_pb2_grpc.SyncServiceStub(channel).GetPresence(
            sync_pb2.GetPresenceRequest(collection_id=server.config.legacy_collection)
        )
    (member,) = [m for m in reply.members if m.peer_id == peer_id]
    if user_info is None:
        assert not member.HasField("user_info")
        return
    info = member.user_info
    assert info.user_id == user_info["user_id"]
    for key in ("username", "display_name", "avatar_url"):
        assert (getattr(info, key) if info.HasField(key) else None) == user_info[key]


# --- invalid input -----------------------------------------------------------------------


def _expected_code(section: str, name: str) -> str:
    if section == "invalid":
        return INDEX["invalid"][name].expected
    return "invalid_message" if INDEX["valid"][name].shape == "B" else "unknown_type"


def _string_message_id(raw: bytes) -> str | None:
    try:
        value = exact_json(raw)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict) and "type" not in value:
        message_id = value.get("message_id")
        return message_id if isinstance(message_id, str) else None
    return None


@pytest.mark.parametrize(
    ("section", "name"),
    [("invalid", name) for name in _invalid_fixtures()]
    + [("valid", name) for name in _refused_server_fixtures()],
)
async def test_bad_input_gets_an_error_and_the_connection_carries_on(
    server: SyncwireServer, gateway_log: _Captured, section: str, name: str
) -> None:
    raw = _fixture(section, name)
    code = _expected_code(section, name)
    sender, observer = await open_pair(server.ws_url)

    await sender.send_text(raw)
    error = await sender.recv()
    message_id = _string_message_id(raw)
    keys = {"type", "code", "reason", "timestamp"} | ({"message_id"} if message_id else set())
    assert set(error) == keys, error
    assert error["type"] == "error" and error["code"] == code, error
    assert isinstance(error["reason"], str) and error["reason"].strip()
    assert error.get("message_id") == message_id
    _assert_fresh_time(error["timestamp"])

    # The next valid message goes through; the observer saw nothing of the bad input.
    probe = await sender.probe()
    await sender.expect_probe(probe, sender.peer_id)
    await observer.expect_probe(probe, sender.peer_id)

    (line,) = [entry for entry in gateway_log.lines if entry.get("error_code") == code]
    assert line["level"] == "warning" and error["reason"] in line["message"]
    assert (line["peer_id"], line["transport"]) == (sender.peer_id, "legacy")
    assert line["peer"].startswith("ipv4:127.0.0.1:")
    await sender.ws.close()
    await observer.ws.close()


async def test_binary_garbage_is_acked_as_binary_and_fatal_as_text(
    server: SyncwireServer,
) -> None:
    garbage = _binary_garbage()
    sender, observer = await open_pair(server.ws_url)

    await sender.send_binary(garbage)
    ack = await sender.recv()
    assert set(ack) == {"type", "peer_id", "size", "timestamp"}
    assert (ack["type"], ack["peer_id"], ack["size"]) == ("binary_ack", sender.peer_id, 64)
    probe = await sender.probe()
    await sender.expect_probe(probe, sender.peer_id)
    await observer.expect_probe(probe, sender.peer_id)  # never relayed

    # The same bytes in a TEXT frame fail the connection (RFC 6455), and only it.
    fatal = await LegacyClient.open(server.ws_url, compression=None)
    await observer.expect_presence(fatal.peer_id, "connected")
    await sender.expect_presence(fatal.peer_id, "connected")
    fatal.send_raw_text_frame(garbage)
    assert (await fatal.closed()).code == 1007
    await observer.expect_presence(fatal.peer_id, "disconnected")
    probe = await observer.probe()
    await observer.expect_probe(probe, observer.peer_id)


async def test_size_limit_is_one_mib_inclusive(server: SyncwireServer) -> None:
    sender, observer = await open_pair(server.ws_url)
    at_limit = _oversize_payload(1_048_576)
    await sender.send_text(at_limit)
    data = json.loads(at_limit)["data"]
    for client in (sender, observer):
        await _expect_sync(client, sender.peer_id, data)  # the relay itself exceeds 1 MiB

    await sender.send_text(_oversize_payload(1_048_577))
    error = await sender.recv()
    assert (error["type"], error["code"]) == ("error", "message_too_large")
    await sender.send_binary(b"\x00" * 1_048_576)
    ack = await sender.recv()
    assert (ack["type"], ack["size"]) == ("binary_ack", 1_048_576)
    await sender.send_binary(b"\x00" * 1_048_577)
    error = await sender.recv()
    assert (error["type"], error["code"]) == ("error", "message_too_large")
    probe = await sender.probe()
    await sender.expect_probe(probe, sender.peer_id)
    await observer.expect_probe(probe, sender.peer_id)  # nothing over the limit relayed

    # Beyond the WebSocket frame bound the listener refuses to buffer it: close 1009.
    beyond = server.config.max_message_bytes + WS_MAX_SIZE_OVERHEAD + 1
    await sender.send_binary(b"\x00" * beyond)
    assert (await sender.closed()).code == 1009
    await observer.expect_presence(sender.peer_id, "disconnected")


# --- connection lifecycle ----------------------------------------------------------------


def _same_shape(actual: object, fixture: object, path: str = "$") -> None:
    """Same keys and JSON types as the fixture (server-made values differ)."""
    if isinstance(fixture, dict):
        assert isinstance(actual, dict) and set(actual) == set(fixture), (path, actual)
        for key, item in fixture.items():
            _same_shape(actual[key], item, f"{path}.{key}")
    else:
        assert type(actual) is type(fixture), (path, actual, fixture)


async def test_server_frames_have_the_fixture_shapes(server: SyncwireServer) -> None:
    sender, observer = await open_pair(server.ws_url)
    _same_shape(sender.welcome, exact_json(_fixture("valid", "a_welcome.json")))

    late = await LegacyClient.open(server.ws_url)
    joined = await observer.expect_presence(late.peer_id, "connected")
    _same_shape(joined, exact_json(_fixture("valid", "a_presence_connected.json")))
    await sender.expect_presence(late.peer_id, "connected")

    rebroadcast = exact_json(_fixture("valid", "a_sync_rebroadcast.json"))
    assert isinstance(rebroadcast, dict)
    await sender.send_text(json.dumps({"type": "sync", "data": rebroadcast["data"]}))
    relayed = await _expect_sync(observer, sender.peer_id, rebroadcast["data"])
    _same_shape(relayed, rebroadcast)
    for client in (sender, late):
        await _expect_sync(client, sender.peer_id, rebroadcast["data"])

    await sender.send_binary(b"x" * 1234)
    _same_shape(await sender.recv(), exact_json(_fixture("valid", "a_binary_ack.json")))
    await sender.send_text("{")
    _same_shape(await sender.recv(), exact_json(_fixture("valid", "a_error.json")))

    await late.ws.close()
    left = await observer.expect_presence(late.peer_id, "disconnected")
    _same_shape(left, exact_json(_fixture("valid", "a_presence_disconnected.json")))


async def test_welcome_presence_sequence_and_prompt_disconnected() -> None:
    async with running_server(max_connections=77, heartbeat_interval=7.0) as server:
        first = await LegacyClient.open(server.ws_url)  # asserts welcome, then own connected
        info = first.welcome["server_info"]
        assert info == {"version": __version__, "max_connections": 77, "heartbeat_interval": 7}
        assert uuid.UUID(first.peer_id).version == 4
        _assert_fresh_time(first.welcome["timestamp"])

        second = await LegacyClient.open(server.ws_url)
        assert second.peer_id != first.peer_id
        await first.expect_presence(second.peer_id, "connected")

        loop = asyncio.get_running_loop()
        await second.ws.close()
        started = loop.time()
        await first.expect_presence(second.peer_id, "disconnected")
        assert loop.time() - started < 1.0

        # A connection that dies without a close handshake is announced as promptly.
        dead = await LegacyClient.open(server.ws_url)
        await first.expect_presence(dead.peer_id, "connected")
        dead.ws.transport.abort()
        started = loop.time()
        await first.expect_presence(dead.peer_id, "disconnected")
        assert loop.time() - started < 1.0

        sample = server.core.metrics.registry.get_sample_value
        assert sample("syncwire_sessions_opened_total", {"transport": "legacy"}) == 3
        assert sample("syncwire_connections", {"transport": "legacy"}) == 1
        assert (sample("syncwire_messages_out_total", {"transport": "legacy"}) or 0) >= 7


def test_render_cache_renders_each_broadcast_once_per_form() -> None:
    cache = LegacyRenderCache(size=2)
    delta = sync_pb2.SyncResponse(
        delta=types_pb2.Delta(
            collection_id="c", crdt_type=types_pb2.CRDT_TYPE_RGA, delta=b"\x01", replica_id=REPLICA
        )
    )
    plain = cache.render(delta, wrapper=False)
    assert plain is not None and cache.render(delta, wrapper=False) is plain
    wrapped = cache.render(delta, wrapper=True)
    assert wrapped is not None and wrapped != plain and b'"Delta"' in wrapped
    assert cache.hits == 1 and len(cache) == 2
    # Direct replies reach one connection: rendered, never cached.
    ack = sync_pb2.SyncResponse(binary_ack=types_pb2.BinaryAck(peer_id=REPLICA, size=1))
    assert cache.render(ack, wrapper=False) is not None and len(cache) == 2
    # Bounded: a third broadcast evicts the oldest entry, which is then rendered afresh.
    beat = sync_pb2.SyncResponse(heartbeat=types_pb2.Heartbeat(server_id="s"))
    cache.render(beat, wrapper=False)
    assert len(cache) == 2
    again = cache.render(delta, wrapper=False)
    assert again == plain and again is not plain


async def test_server_heartbeat_has_a_stable_server_id() -> None:
    async with running_server(heartbeat_interval=0.2) as server:
        a = await LegacyClient.open(server.ws_url)
        b = await LegacyClient.open(server.ws_url)
        # In force: 0.2 s, announced in whole seconds (rounded, at least 1).
        assert a.welcome["server_info"]["heartbeat_interval"] == 1
        await a.expect_presence(b.peer_id, "connected")
        fixture = exact_json(_fixture("valid", "a_heartbeat_server.json"))
        for client in (a, b):
            beats = [await client.recv() for _ in range(3)]
            for beat in beats:
                _same_shape(beat, fixture)
                assert beat["server_id"] == server.core.server_id
            stamps = [parse_rfc3339(beat["timestamp"]) for beat in beats]
            assert all(s is not None for s in stamps)
            assert stamps == sorted(stamps, key=lambda s: s.ToNanoseconds())  # type: ignore[union-attr]
            assert len({beat["timestamp"] for beat in beats}) == 3


async def test_idle_connection_is_closed_and_heartbeats_keep_one_open() -> None:
    async with running_server(idle_timeout=0.5) as server:
        loop = asyncio.get_running_loop()
        opened = loop.time()
        silent = await LegacyClient.open(server.ws_url)
        chatty = await LegacyClient.open(server.ws_url)
        stop = asyncio.Event()

        async def beat() -> None:
            while not stop.is_set():
                await chatty.send_text('{"type":"heartbeat","timestamp":"2025-09-04T10:16:00Z"}')
                await asyncio.sleep(0.1)  # pacing, not ordering

        beating = asyncio.create_task(beat())
        close = await silent.closed()
        assert (close.code, close.reason) == (1000, "idle timeout")
        assert loop.time() - opened >= 0.5
        await chatty.expect_presence(silent.peer_id, "disconnected")
        stop.set()
        await beating
        probe = await chatty.probe()  # still open well past the idle timeout
        await chatty.expect_probe(probe, chatty.peer_id)


async def test_room_id_picks_the_home_collection_and_any_path_works() -> None:
    async with running_server(legacy_collection="lobby") as server:
        room = await LegacyClient.open(f"{server.ws_url}/sync?room_id=Room_1-x&other=1")
        lobby_a = await LegacyClient.open(server.ws_url)
        lobby_b = await LegacyClient.open(f"{server.ws_url}/any/path?x=y")
        await lobby_a.expect_presence(lobby_b.peer_id, "connected")
        async with open_channel(server, "grpc") as channel:
            typed = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
            await typed.welcome()
            await typed.subscribe("Room_1-x")
            await room.send_text('{"type":"sync","data":{"in":"room"}}')
            await _expect_sync(room, room.peer_id, {"in": "room"})
            delta = (await typed.expect("delta")).delta
            assert (delta.collection_id, delta.peer_id) == ("Room_1-x", room.peer_id)
            probe = await lobby_b.probe()
            for client in (lobby_a, lobby_b):  # the lobby heard nothing of the room
                await client.expect_probe(probe, lobby_b.peer_id)
            await typed.close()


@pytest.mark.parametrize(
    "query", ["room_id=bad%20room", "room_id=" + "x" * 51, "room_id=", "room_id=a&room_id=b"]
)
async def test_invalid_room_id_is_refused_with_1008(server: SyncwireServer, query: str) -> None:
    async with connect(f"{server.ws_url}/?{query}") as ws:
        with pytest.raises(ConnectionClosed) as caught:
            await ws.recv()
    close = caught.value.rcvd
    assert close is not None and close.code == 1008
    assert "room_id" in close.reason
    assert ROOM_ID_RULE in close.reason or "more than once" in close.reason


async def test_wrapper_delta_follows_its_collection(server: SyncwireServer) -> None:
    publisher = await LegacyClient.open(server.ws_url)
    delta = {
        "collection_id": "doc-9",
        "crdt_type": "LwwRegister",
        "delta": [7, 8, 9],
        "timestamp": {"secs_since_epoch": 1757000130, "nanos_since_epoch": 5},
        "replica_id": "550e8400-e29b-41d4-a716-446655440000",
    }
    empty = {**delta, "collection_id": ""}
    await publisher.send_text(
        json.dumps({"version": 1, "message": {"Delta": empty}, "message_id": "m-empty"})
    )
    error = await publisher.recv()
    assert (error["code"], error["message_id"]) == ("invalid_message", "m-empty")

    await publisher.send_text(json.dumps({"version": 1, "message": {"Delta": delta}}))
    echo = await publisher.recv()
    assert echo == {"version": 1, "message": {"Delta": delta}, "message_id": None}

    # It now receives doc-9's deltas (any sender, any shape), but not doc-9's presence.
    member = await LegacyClient.open(f"{server.ws_url}/?room_id=doc-9")
    await member.send_text('{"type":"sync","data":[1,2]}')
    await _expect_sync(member, member.peer_id, [1, 2])
    await _expect_sync(publisher, member.peer_id, [1, 2])
    probe = await publisher.probe()
    await publisher.expect_probe(probe, publisher.peer_id)


async def test_shutdown_closes_legacy_connections_with_1001() -> None:
    async with running_server() as server:
        client = await LegacyClient.open(server.ws_url)
        stopping = asyncio.create_task(server.stop(grace=0.5))
        assert (await client.closed()).code == 1001
        await stopping


async def test_full_server_answers_503_or_closes_1013() -> None:
    async with running_server(max_connections=1) as server:
        held = await LegacyClient.open(server.ws_url)
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.ws_url)
        assert refused.value.response.status_code == 503
        await held.ws.close()

    async with running_server(max_connections=1) as server:
        # A gRPC session takes the last slot: the WebSocket handshake still passes, the
        # session is refused, and the connection closes with 1013 (try again later).
        async with open_channel(server, "grpc") as channel:
            typed = SyncStream(sync_pb2_grpc.SyncServiceStub(channel))
            await typed.welcome()
            async with connect(server.ws_url) as ws:
                with pytest.raises(ConnectionClosed) as caught:
                    await ws.recv()
            close = caught.value.rcvd
            assert close is not None and close.code == 1013 and close.reason
            await typed.close()


@pytest.mark.timeout(60)
async def test_slow_consumer_is_closed_with_1013() -> None:
    async with running_server(subscriber_queue=16) as server:
        # No permessage-deflate: the payloads must really fill the socket buffers.
        fast = await LegacyClient.open(server.ws_url, compression=None)
        slow = await LegacyClient.open(server.ws_url, compression=None)  # never reads
        session = next(s for s in server.core.registry.sessions() if s.peer_id == slow.peer_id)
        payload = '{"type":"sync","data":"' + "x" * 256 * 1024 + '"}'

        async def drain_fast() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await fast.recv(timeout=30)

        draining = asyncio.create_task(drain_fast())
        for _ in range(1000):
            if session.queue.ended:
                break
            await fast.send_text(payload)
        assert session.queue.ended, "the server never gave up on the slow reader"
        close = await slow.closed(timeout=30)  # reading again: what was sent, then the close
        assert close.code == 1013 and "slow consumer" in close.reason
        draining.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await draining


async def test_following_more_collections_than_max_subscriptions_is_refused() -> None:
    async with running_server(max_subscriptions=2) as server:
        publisher = await LegacyClient.open(server.ws_url)  # home: the first subscription
        delta = {
            "collection_id": "doc-a",
            "crdt_type": "LwwRegister",
            "delta": [1],
            "timestamp": {"secs_since_epoch": 1757000130, "nanos_since_epoch": 5},
            "replica_id": "550e8400-e29b-41d4-a716-446655440000",
        }
        await publisher.send_text(json.dumps({"version": 1, "message": {"Delta": delta}}))
        echo = await publisher.recv()  # followed: its own delta comes back
        assert echo["message"]["Delta"]["collection_id"] == "doc-a"
        beyond = {**delta, "collection_id": "doc-b"}
        await publisher.send_text(json.dumps({"version": 1, "message": {"Delta": beyond}}))
        error = await publisher.recv()
        assert error["code"] == "too_many_subscriptions", error
        session = next(s for s in server.core.registry.sessions() if s.peer_id == publisher.peer_id)
        assert sorted(session.subscriptions) == ["default", "doc-a"]
        probe = await publisher.probe()  # the connection carries on
        await publisher.expect_probe(probe, publisher.peer_id)
