"""End to end: a raw legacy client, a typed WebSocket client and a gRPC client share a
collection and see each other's deltas, each in its own format.

The legacy client is a plain WebSocket offering no subprotocol and speaking JSON text
frames only. The typed clients are the generated `SyncServiceStub` over
`client.ws_channel.WebSocketChannel` and over `grpc.aio`. Every one of the six
directions is checked: typed clients read a legacy `sync` as a JSON-encoded Delta
holding `data` byte for byte; the legacy client reads a typed Delta as a `sync` whose
`data` is the Delta body (or the JSON itself for a JSON-encoded Delta).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Final

import orjson
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from server.app import SyncwireServer
from syncwire.v1 import sync_pb2, types_pb2
from tests.legacy_strategies import canonical, exact_json
from tests.legacy_ws_client import JsonObject, LegacyClient
from tests.service_harness import SyncStream, running_server, stream_on

pytestmark = pytest.mark.timeout(30)

ROOM: Final = "room-e2e"
BIG_NUMBERS: Final = (
    b'{"u64_max":18446744073709551615,"two_53_plus_1":9007199254740993,'
    b'"i64_min":-9223372036854775808,"beyond_u64":123456789012345678901234567890,'
    b'"float":0.1,"neg_zero":-0.0,"text":"\xc3\xbc\xf0\x9f\x98\x80"}'
)
REPLICA: Final = "550e8400-e29b-41d4-a716-446655440000"
CLIENT_TIME: Final = Timestamp(seconds=1_757_000_130, nanos=123_456_789)


@contextlib.asynccontextmanager
async def _typed(server: SyncwireServer, transport: str) -> AsyncIterator[SyncStream]:
    """A typed client over `transport`, subscribed to ROOM with presence."""
    async with stream_on(server, transport) as stream:
        await stream.subscribe(ROOM, join_presence=True)
        yield stream


async def _publish(stream: SyncStream, delta: types_pb2.Delta) -> None:
    """Publishes `delta` as given (the harness's helper fixes the CRDT type)."""
    request_id = stream.send(publish=sync_pb2.Publish(delta=delta))
    reply = await stream.expect_reply(request_id)
    assert reply.HasField("publish_ack"), reply


def _assert_same_json(actual: object, expected: object) -> None:
    assert canonical(actual) == canonical(expected), (actual, expected)


async def _legacy_sync(client: LegacyClient, sender: str) -> JsonObject:
    message = await client.recv()
    assert message["type"] == "sync" and message["peer_id"] == sender, message
    return message


async def _typed_delta(stream: SyncStream, sender: str) -> types_pb2.Delta:
    delta = (await stream.expect("delta")).delta
    assert (delta.collection_id, delta.peer_id) == (ROOM, sender)
    assert delta.offset > 0 and delta.epoch and delta.HasField("server_time")
    return delta


def _body(delta: types_pb2.Delta, crdt_name: str) -> JsonObject:
    """The Delta body a legacy receiver gets as `data` (README section 4)."""
    return {
        "collection_id": delta.collection_id,
        "crdt_type": crdt_name,
        "delta": list(delta.delta),
        "timestamp": {
            "secs_since_epoch": delta.timestamp.seconds,
            "nanos_since_epoch": delta.timestamp.nanos,
        },
        "replica_id": delta.replica_id,
    }


async def test_legacy_typed_websocket_and_grpc_clients_see_each_other() -> None:
    async with running_server() as server:
        legacy = await LegacyClient.open(f"{server.ws_url}/sync?room_id={ROOM}")
        async with _typed(server, "ws") as ws, _typed(server, "grpc") as grpc_client:
            # Typed joins reach the legacy client as presence "connected".
            await legacy.expect_presence(ws.peer_id, "connected")
            await legacy.expect_presence(grpc_client.peer_id, "connected")

            # legacy -> typed ws, legacy -> grpc: a JSON-encoded Delta holding `data`.
            await legacy.send_text(b'{"type":"sync","data":' + BIG_NUMBERS + b"}")
            echo = await _legacy_sync(legacy, legacy.peer_id)
            _assert_same_json(echo["data"], exact_json(BIG_NUMBERS))
            for stream in (ws, grpc_client):
                delta = await _typed_delta(stream, legacy.peer_id)
                assert delta.encoding == types_pb2.PAYLOAD_ENCODING_JSON
                assert delta.delta == BIG_NUMBERS  # byte for byte, no number rounding

            # typed ws -> legacy, typed ws -> grpc: a binary CRDT delta.
            sent = types_pb2.Delta(
                collection_id=ROOM,
                crdt_type=types_pb2.CRDT_TYPE_LSEQ,
                delta=bytes(range(256)),
                timestamp=CLIENT_TIME,
                replica_id=REPLICA,
            )
            await _publish(ws, sent)
            relayed = await _legacy_sync(legacy, ws.peer_id)
            assert relayed["data"] == _body(sent, "LSEQ")
            for stream in (grpc_client, ws):
                delta = await _typed_delta(stream, ws.peer_id)
                assert (delta.crdt_type, delta.delta, delta.replica_id) == (
                    sent.crdt_type,
                    sent.delta,
                    sent.replica_id,
                )
                assert delta.timestamp == CLIENT_TIME

            # grpc -> legacy, grpc -> typed ws: a binary delta, then a JSON-encoded one.
            binary = types_pb2.Delta(
                collection_id=ROOM,
                crdt_type=types_pb2.CRDT_TYPE_LWW_MAP,
                delta=b'{"k":"v"}\x00\xff',
                timestamp=CLIENT_TIME,
                replica_id=REPLICA,
            )
            await _publish(grpc_client, binary)
            relayed = await _legacy_sync(legacy, grpc_client.peer_id)
            assert relayed["data"] == _body(binary, "LwwMap")
            json_delta = types_pb2.Delta(
                collection_id=ROOM, encoding=types_pb2.PAYLOAD_ENCODING_JSON, delta=BIG_NUMBERS
            )
            await _publish(grpc_client, json_delta)
            relayed = await _legacy_sync(legacy, grpc_client.peer_id)
            _assert_same_json(relayed["data"], exact_json(BIG_NUMBERS))
            for stream in (ws, grpc_client):
                first = await _typed_delta(stream, grpc_client.peer_id)
                assert (first.crdt_type, first.delta) == (binary.crdt_type, binary.delta)
                second = await _typed_delta(stream, grpc_client.peer_id)
                assert second.encoding == types_pb2.PAYLOAD_ENCODING_JSON
                assert second.delta == BIG_NUMBERS
                assert second.offset == first.offset + 1

            # Legacy presence and departure reach typed clients as typed presence.
            await legacy.send_text('{"type":"presence","action":"typing"}')
            await legacy.expect_presence(legacy.peer_id, "typing")
            for stream in (ws, grpc_client):
                presence = (await stream.expect("presence")).presence
                assert (presence.peer_id, presence.status) == (legacy.peer_id, "typing")
                assert presence.collection_id == ROOM
            await legacy.ws.close()
            for stream in (ws, grpc_client):
                leave = (await stream.expect("peer_leave")).peer_leave
                assert (leave.peer_id, leave.collection_id) == (legacy.peer_id, ROOM)


async def test_wrapper_delta_reaches_typed_and_legacy_peers_of_its_collection() -> None:
    async with running_server() as server:
        member = await LegacyClient.open(f"{server.ws_url}/?room_id={ROOM}")
        publisher = await LegacyClient.open(server.ws_url)  # home: the default collection
        async with _typed(server, "ws") as ws, _typed(server, "grpc") as grpc_client:
            await member.expect_presence(ws.peer_id, "connected")
            await member.expect_presence(grpc_client.peer_id, "connected")
            body = {
                "collection_id": ROOM,
                "crdt_type": "GCounter",
                "delta": [0, 0, 0, 7],
                "timestamp": {"secs_since_epoch": 1757000130, "nanos_since_epoch": 5},
                "replica_id": REPLICA,
            }
            wrapper = {"version": 1, "message": {"Delta": body}, "message_id": "m-7"}
            await publisher.send_text(orjson.dumps(wrapper))
            echo = await publisher.recv()
            assert echo == {"version": 1, "message": {"Delta": body}, "message_id": None}
            assert (await _legacy_sync(member, publisher.peer_id))["data"] == body
            for stream in (ws, grpc_client):
                delta = await _typed_delta(stream, publisher.peer_id)
                assert delta.crdt_type == types_pb2.CRDT_TYPE_G_COUNTER
                assert delta.delta == bytes([0, 0, 0, 7]) and delta.replica_id == REPLICA
                assert delta.timestamp == Timestamp(seconds=1757000130, nanos=5)
        await member.ws.close()
        await publisher.ws.close()
