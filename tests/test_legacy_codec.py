"""Field-level rules of the legacy translator: classification order, serde strictness,
UUID and time encodings, and how typed messages are rendered for legacy receivers."""

from __future__ import annotations

import json

import orjson
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from server.legacy import (
    InvalidUtf8Error,
    LegacyProtocolError,
    UnrepresentableError,
    decode_client_message,
    decode_server_message,
    encode_envelope,
    encode_request,
    encode_response,
    envelope_to_request,
    error_response,
    format_rfc3339,
    parse_rfc3339,
    render_error,
    render_for_legacy,
)
from syncwire.v1 import sync_pb2, types_pb2

UUID = "550e8400-e29b-41d4-a716-446655440000"
TIME = {"secs_since_epoch": 1_757_000_130, "nanos_since_epoch": 123_456_789}
DELTA = {
    "collection_id": "doc-1",
    "crdt_type": "LwwRegister",
    "delta": [1, 2, 3],
    "timestamp": TIME,
    "replica_id": UUID,
}


def _wrapper(variant: str, body: object, **extra: object) -> str:
    return json.dumps({"version": 1, "message": {variant: body}, "message_id": "m1", **extra})


def _error(payload: str | dict[str, object]) -> LegacyProtocolError:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    with pytest.raises(LegacyProtocolError) as caught:
        decode_client_message(text)
    assert caught.value.reason
    return caught.value


# --- classification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"version": "1", "message": {"Delta": DELTA}}, "invalid_message"),
        ({"version": 2}, "unsupported_version"),  # version before message
        ({"version": 2, "message_id": 5}, "unsupported_version"),
        ({"version": True, "message": {"Delta": DELTA}}, "invalid_message"),
        ({"version": 1.0, "message": {"Delta": DELTA}}, "invalid_message"),
        ({"version": -1, "message": {"Delta": DELTA}}, "invalid_message"),
        ({"version": 2**32, "message": {"Delta": DELTA}}, "invalid_message"),
        ({"message": {"Delta": DELTA}}, "invalid_message"),  # version is required
        ({"version": 1}, "invalid_message"),
        ({"version": 1, "message": "Delta"}, "invalid_message"),
        ({"version": 1, "message": {}}, "invalid_message"),
        ({"version": 1, "message": {"Frobnicate": {}, "Delta": DELTA}}, "invalid_message"),
        ({"version": 1, "message": {"Frobnicate": {}}}, "unknown_type"),
        ({"version": 1, "message": {"Delta": None}}, "invalid_message"),
        ({"version": 1, "message": {"Delta": DELTA}, "message_id": 7}, "invalid_message"),
        ({"type": None, "data": 1}, "invalid_message"),
        ({"type": "", "data": 1}, "unknown_type"),
        ({"type": "welcome"}, "unknown_type"),
        ({"type": "error"}, "unknown_type"),
        ({"type": "binary_ack"}, "unknown_type"),
        ({"type": "Sync", "data": 1}, "unknown_type"),
        ({"message_id": "m1"}, "invalid_message"),
        ({}, "invalid_message"),
    ],
)
def test_classification_and_order(payload: dict[str, object], code: str) -> None:
    assert _error(payload).code == code


def test_type_key_wins_over_wrapper_keys() -> None:
    message = decode_client_message('{"type":"sync","data":1,"version":2,"message":{}}')
    assert message.request.publish.delta.delta == b"1" and not message.is_wrapper


def test_errors_carry_only_string_message_ids() -> None:
    assert _error(_wrapper("Delta", {**DELTA, "delta": "AQID"})).message_id == "m1"
    assert _error({"version": 9, "message_id": "x"}).message_id == "x"
    assert _error({"version": 9, "message_id": None}).message_id is None
    assert _error({"version": 9, "message_id": 3}).message_id is None
    assert _error({"type": "nope", "message_id": "x"}).message_id is None  # shape A


# --- shape A client messages ------------------------------------------------------------


def test_tagged_client_messages() -> None:
    sync = decode_client_message('{"type":"sync","data":null,"peer_id":"spoof"}').request
    assert sync.publish.delta.delta == b"null"
    assert sync.publish.delta.encoding == types_pb2.PAYLOAD_ENCODING_JSON
    assert sync.publish.delta.collection_id == "" and not sync.publish.delta.peer_id
    presence = decode_client_message('{"type":"presence","action":""}').request.presence
    assert presence.action == types_pb2.PRESENCE_ACTION_UPDATE and presence.status == ""
    assert _error('{"type":"presence","action":null}').code == "invalid_message"
    assert _error('{"type":"presence"}').code == "invalid_message"


@pytest.mark.parametrize(
    ("stamp", "kept"),
    [
        ('"2025-09-04T10:16:00Z"', True),
        ('"2025-09-04T10:16:00.5+02:00"', True),
        ('"not a time"', False),
        ("5", False),
        ("null", False),
    ],
)
def test_client_heartbeat_timestamp_is_optional_and_never_rejected(stamp: str, kept: bool) -> None:
    request = decode_client_message('{"type":"heartbeat","timestamp":' + stamp + "}").request
    assert request.heartbeat.HasField("timestamp") == kept
    assert not decode_client_message('{"type":"heartbeat"}').request.heartbeat.HasField("timestamp")


# --- shape B fields ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "delta",
    [
        [True],
        [2, 0, False, 9],  # a bool among bytes that bytes() would take as 0
        [7, True],
        [1.0],
        [256],
        [-1],
        [[1]],
        "AQID",
        None,
        {"0": 1},
    ],
)
def test_byte_arrays_are_strict(delta: object) -> None:
    assert _error(_wrapper("Delta", {**DELTA, "delta": delta})).code == "invalid_message"


@pytest.mark.parametrize(
    "timestamp",
    [
        {"secs_since_epoch": 1},
        {"secs_since_epoch": 1, "nanos_since_epoch": 0, "extra": 0},
        {"secs_since_epoch": -1, "nanos_since_epoch": 0},
        {"secs_since_epoch": 1, "nanos_since_epoch": 1_000_000_000},
        {"secs_since_epoch": 253_402_300_800, "nanos_since_epoch": 0},
        {"secs_since_epoch": 1.0, "nanos_since_epoch": 0},
        {"secs_since_epoch": True, "nanos_since_epoch": 0},
        [1, 0],
        "2025-09-04T10:15:30Z",
        1757000130,
    ],
)
def test_system_times_are_strict(timestamp: object) -> None:
    assert _error(_wrapper("Delta", {**DELTA, "timestamp": timestamp})).code == "invalid_message"


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        (UUID.upper(), UUID),
        (UUID.replace("-", ""), UUID),
        ("{" + UUID + "}", UUID),
        ("urn:uuid:" + UUID, UUID),
        ("urn:uuid:" + UUID.upper(), UUID),
    ],
)
def test_uuid_spellings_of_uuid_parse_str_are_accepted(spelling: str, canonical: str) -> None:
    envelope = decode_client_message(_wrapper("PeerLeave", {"replica_id": spelling})).envelope
    assert envelope is not None and envelope.peer_leave.peer_id == canonical


@pytest.mark.parametrize(
    "spelling",
    [
        "test_peer_123",
        "",
        "{" + UUID.replace("-", "") + "}",  # braces only around the hyphenated form
        "urn:uuid:" + UUID.replace("-", ""),
        "URN:UUID:" + UUID,
        "uuid:" + UUID,
        "+" + UUID.replace("-", "")[1:],  # Python's uuid.UUID alone takes these
        UUID.replace("-", "")[:8] + "_" + UUID.replace("-", "")[9:],
        " " + UUID,
        UUID + "\n",
        UUID[:-1] + "g",
        "550e8400e-29b-41d4-a716-446655440000",
        "550e-8400-e29b-41d4-a716446655440000",
        "\uff15\uff150e8400-e29b-41d4-a716-446655440000",  # fullwidth digits
    ],
)
def test_other_uuid_spellings_are_refused(spelling: str) -> None:
    error = _error(_wrapper("PeerLeave", {"replica_id": spelling}))
    assert error.code == "invalid_message" and error.message_id == "m1"


def test_enum_names_are_exact() -> None:
    for bad in ("lww_register", "lwwregister", "LWWREGISTER", "Unspecified", ""):
        assert _error(_wrapper("Delta", {**DELTA, "crdt_type": bad})).code == "invalid_message"
    presence = {"peer_id": UUID, "action": "join", "timestamp": TIME}
    assert _error(_wrapper("Presence", presence)).code == "invalid_message"


def test_option_fields_accept_null_and_absence() -> None:
    partial = {"user_id": "u1", "display_name": "Zoë"}
    envelope = decode_client_message(
        _wrapper("PeerJoin", {"replica_id": UUID, "user_info": partial})
    ).envelope
    assert envelope is not None
    info = envelope.peer_join.user_info
    assert info.user_id == "u1" and info.display_name == "Zoë"
    assert not info.HasField("username") and not info.HasField("avatar_url")
    absent = decode_client_message(_wrapper("PeerJoin", {"replica_id": UUID})).envelope
    assert absent is not None and not absent.peer_join.HasField("user_info")
    bad_infos: list[object] = [
        {"username": "x"},
        {"user_id": 1},
        {"user_id": "u", "username": 5},
        [],
    ]
    for bad_info in bad_infos:
        body = {"replica_id": UUID, "user_info": bad_info}
        assert _error(_wrapper("PeerJoin", body)).code == "invalid_message"


def test_wrapper_server_info() -> None:
    base = {"peer_id": UUID, "timestamp": TIME}
    info: dict[str, object] = {"version": "1.0.0", "max_connections": None, "features": []}
    decoded = decode_server_message(_wrapper("Welcome", {**base, "server_info": info}))
    assert isinstance(decoded, types_pb2.Envelope)
    assert not decoded.welcome.server_info.HasField("max_connections")
    for bad in ({**info, "features": [1]}, {"version": "1"}, {**info, "max_connections": -1}):
        with pytest.raises(LegacyProtocolError, match="invalid_message"):
            decode_server_message(_wrapper("Welcome", {**base, "server_info": bad}))


@pytest.mark.parametrize("size", [-1, 2**64, 1.0, "1", True, None])
def test_sizes_are_u64(size: object) -> None:
    body = {"peer_id": UUID, "size": size, "timestamp": TIME}
    with pytest.raises(LegacyProtocolError, match="invalid_message"):
        decode_server_message(_wrapper("BinaryAck", body))


def test_wrapper_requests_for_the_session() -> None:
    join = decode_client_message(
        _wrapper("PeerJoin", {"replica_id": UUID, "user_info": {"user_id": "u1"}})
    )
    assert join.request.presence.action == types_pb2.PRESENCE_ACTION_JOIN
    assert join.request.presence.user_info.user_id == "u1"
    assert join.request.message_id == "m1" and join.message_id == "m1"
    leave = decode_client_message(_wrapper("PeerLeave", {"replica_id": UUID})).request
    assert leave.presence.action == types_pb2.PRESENCE_ACTION_LEAVE
    presence = {"peer_id": UUID, "action": "Leave", "timestamp": TIME}
    assert (
        decode_client_message(_wrapper("Presence", presence)).request.presence.action
        == types_pb2.PRESENCE_ACTION_LEAVE
    )
    publish = decode_client_message(_wrapper("Delta", DELTA)).request.publish.delta
    assert publish.collection_id == "doc-1" and publish.delta == b"\x01\x02\x03"
    assert publish.crdt_type == types_pb2.CRDT_TYPE_LWW_REGISTER
    heartbeat = decode_client_message(
        _wrapper("Heartbeat", {"replica_id": UUID, "timestamp": TIME})
    ).request
    assert heartbeat.heartbeat.replica_id == UUID
    with pytest.raises(UnrepresentableError):
        envelope_to_request(types_pb2.Envelope(welcome=types_pb2.Welcome(peer_id=UUID)))


# --- time ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "nanos", "text"),
    [
        (0, 0, "1970-01-01T00:00:00+00:00"),
        (1_757_000_130, 500_000_000, "2025-09-04T15:35:30.5+00:00"),
        (1_757_000_130, 250_000_000, "2025-09-04T15:35:30.25+00:00"),
        (1_757_000_130, 123_456_789, "2025-09-04T15:35:30.123456789+00:00"),
        (1_757_000_130, 1_000, "2025-09-04T15:35:30.000001+00:00"),
        (-1, 999_999_999, "1969-12-31T23:59:59.999999999+00:00"),
        (-62_135_596_800, 0, "0001-01-01T00:00:00+00:00"),
        (253_402_300_799, 0, "9999-12-31T23:59:59+00:00"),
    ],
)
def test_rfc3339_format_and_parse(seconds: int, nanos: int, text: str) -> None:
    timestamp = Timestamp(seconds=seconds, nanos=nanos)
    assert format_rfc3339(timestamp) == text
    assert parse_rfc3339(text) == timestamp


def test_rfc3339_format_never_raises() -> None:
    assert format_rfc3339(Timestamp(seconds=-(2**62))) == "0001-01-01T00:00:00+00:00"
    assert format_rfc3339(Timestamp(seconds=2**62)) == "9999-12-31T23:59:59.999999999+00:00"
    assert format_rfc3339(Timestamp(seconds=0, nanos=1_500_000_000)) == (
        "1970-01-01T00:00:01.5+00:00"
    )


@pytest.mark.parametrize(
    ("text", "seconds", "nanos"),
    [
        ("2025-09-04T10:15:32Z", 1_756_980_932, 0),
        ("2025-09-04t10:15:32z", 1_756_980_932, 0),
        ("2025-09-04 10:15:32Z", 1_756_980_932, 0),
        ("2025-09-04T12:15:32.1+02:00", 1_756_980_932, 100_000_000),
        ("2025-09-04T10:15:32-00:00", 1_756_980_932, 0),
        ("2025-09-04T05:45:32-04:30", 1_756_980_932, 0),
    ],
)
def test_rfc3339_parse_accepts_offsets(text: str, seconds: int, nanos: int) -> None:
    assert parse_rfc3339(text) == Timestamp(seconds=seconds, nanos=nanos)


@pytest.mark.parametrize(
    "text",
    [
        "2025-09-04T10:15:32",
        "2025-09-04T10:15:32.1234567891Z",
        "2025-09-04T10:15:60Z",
        "2025-02-30T10:15:32Z",
        "2025-09-04T10:15:32+24:00",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+00:01",
        "\uff12025-09-04T10:15:32Z",  # a fullwidth digit
        "2025-09-04T10:15:32Z ",
        "",
    ],
)
def test_rfc3339_parse_refuses(text: str) -> None:
    assert parse_rfc3339(text) is None


def test_server_messages_need_rfc3339_timestamps() -> None:
    with pytest.raises(LegacyProtocolError, match="invalid_message"):
        decode_server_message('{"type":"heartbeat","timestamp":"soon","server_id":"s"}')


# --- rendering for legacy receivers -------------------------------------------------------

SERVER_TIME = Timestamp(seconds=1_757_000_131)


def _relayed(**fields: object) -> sync_pb2.SyncResponse:
    delta = types_pb2.Delta(peer_id="peer-1", server_time=SERVER_TIME, **fields)  # type: ignore[arg-type]
    return sync_pb2.SyncResponse(delta=delta)


def _render(response: sync_pb2.SyncResponse, *, wrapper: bool = False) -> dict[str, object]:
    frame = render_for_legacy(response, wrapper=wrapper)
    assert frame is not None
    value = orjson.loads(frame)
    assert isinstance(value, dict)
    return value


def test_wrapper_connections_get_wrapper_deltas_when_possible() -> None:
    typed = _relayed(
        collection_id="doc-9",
        crdt_type=types_pb2.CRDT_TYPE_RGA,
        delta=b"\x00\xff",
        timestamp=Timestamp(seconds=5, nanos=6),
        replica_id=UUID.upper(),
    )
    wrapped = _render(typed, wrapper=True)
    assert wrapped == {
        "version": 1,
        "message": {
            "Delta": {
                "collection_id": "doc-9",
                "crdt_type": "RGA",
                "delta": [0, 255],
                "timestamp": {"secs_since_epoch": 5, "nanos_since_epoch": 6},
                "replica_id": UUID,
            }
        },
        "message_id": None,
    }
    tagged = _render(typed)
    assert tagged["type"] == "sync" and tagged["peer_id"] == "peer-1"
    assert tagged["data"] == {**wrapped["message"]["Delta"], "replica_id": UUID.upper()}  # type: ignore[index]


def test_deltas_the_wrapper_cannot_hold_go_out_as_sync() -> None:
    json_delta = _relayed(encoding=types_pb2.PAYLOAD_ENCODING_JSON, delta=b' {"a": [1, 2]} ')
    assert _render(json_delta, wrapper=True)["data"] == {"a": [1, 2]}
    no_uuid = _relayed(crdt_type=types_pb2.CRDT_TYPE_DAG, replica_id="replica-7", delta=b"x")
    data = _render(no_uuid, wrapper=True)["data"]
    assert isinstance(data, dict) and data["replica_id"] == "replica-7"
    assert data["delta"] == [120] and data["crdt_type"] == "DAG"
    before_1970 = _relayed(
        crdt_type=types_pb2.CRDT_TYPE_DAG, replica_id=UUID, timestamp=Timestamp(seconds=-5)
    )
    assert _render(before_1970, wrapper=True)["type"] == "sync"


@pytest.mark.parametrize(
    "payload", [b"", b"NaN", b"\xff", b'"\\ud800"', b"[" * 127 + b"]" * 127, b"1 2"]
)
def test_json_deltas_that_are_not_strict_json_are_sent_as_bytes(payload: bytes) -> None:
    data = _render(_relayed(encoding=types_pb2.PAYLOAD_ENCODING_JSON, delta=payload))["data"]
    assert isinstance(data, dict) and data["crdt_type"] is None
    assert bytes(data["delta"]) == payload


def test_json_delta_bytes_are_embedded_verbatim() -> None:
    payload = b'{"n":18446744073709551616,"f":1E21,"s":"\\u00e9"}'
    frame = render_for_legacy(_relayed(encoding=types_pb2.PAYLOAD_ENCODING_JSON, delta=payload))
    assert frame is not None and payload in frame


@pytest.mark.parametrize(
    ("action", "status", "legacy"),
    [
        (types_pb2.PRESENCE_ACTION_UPDATE, "typing", "typing"),
        (types_pb2.PRESENCE_ACTION_UPDATE, "", ""),
        (types_pb2.PRESENCE_ACTION_UNSPECIFIED, "idle", "idle"),
        (types_pb2.PRESENCE_ACTION_JOIN, "", "connected"),
        (types_pb2.PRESENCE_ACTION_LEAVE, "", "disconnected"),
        (types_pb2.PRESENCE_ACTION_JOIN, "online", "online"),
    ],
)
def test_presence_actions(
    action: types_pb2.PresenceAction.ValueType, status: str, legacy: str
) -> None:
    presence = types_pb2.Presence(peer_id="p", action=action, status=status)
    assert _render(sync_pb2.SyncResponse(presence=presence))["action"] == legacy
    assert _render(sync_pb2.SyncResponse(presence=presence), wrapper=True)["type"] == "presence"


def test_join_and_leave_are_connected_and_disconnected() -> None:
    join = sync_pb2.SyncResponse(peer_join=types_pb2.PeerJoin(peer_id="p", timestamp=SERVER_TIME))
    leave = sync_pb2.SyncResponse(peer_leave=types_pb2.PeerLeave(peer_id="p"))
    assert _render(join) == {
        "type": "presence",
        "peer_id": "p",
        "action": "connected",
        "timestamp": "2025-09-04T15:35:31+00:00",
    }
    assert _render(leave)["action"] == "disconnected"


def test_kinds_without_legacy_form_render_nothing() -> None:
    for response in (
        sync_pb2.SyncResponse(),
        sync_pb2.SyncResponse(subscribed=sync_pb2.Subscribed(collection_id="c")),
        sync_pb2.SyncResponse(unsubscribed=sync_pb2.Unsubscribed(collection_id="c")),
        sync_pb2.SyncResponse(publish_ack=sync_pb2.PublishAck(offset=1)),
        sync_pb2.SyncResponse(disconnect=sync_pb2.Disconnect(reason="bye")),
    ):
        assert encode_response(response) is None
        assert render_for_legacy(response, wrapper=True) is None


def test_typed_errors_render_with_a_readable_code() -> None:
    typed = sync_pb2.SyncResponse(error=sync_pb2.Error(code=7, message="no access"))
    assert _render(typed)["code"] == "permission_denied"
    frame = render_for_legacy(typed)
    assert frame is not None
    decoded = decode_server_message(frame)
    assert isinstance(decoded, sync_pb2.SyncResponse) and decoded.error.code == 7
    unknown = frame.replace(b"permission_denied", b"teapot")
    assert decode_server_message(unknown).error.code == 2  # type: ignore[union-attr]
    bare = sync_pb2.SyncResponse(error=sync_pb2.Error(code=13))
    rendered = _render(bare)
    assert rendered["code"] == "internal" and rendered["reason"] == "internal"
    assert "message_id" not in rendered


def test_error_response_and_frame() -> None:
    error = LegacyProtocolError("message_too_large", "too big", "m9")
    at = Timestamp(seconds=1)
    response = error_response(error, at)
    assert response.error.code == 8 and response.error.reason_code == "message_too_large"
    assert response.message_id == "m9" and response.error.timestamp == at
    assert encode_response(response) == render_error(error, at)
    empty_id = LegacyProtocolError("invalid_message", "bad", "")
    assert orjson.loads(render_error(empty_id, at))["message_id"] == ""


def test_error_types() -> None:
    error = LegacyProtocolError("unknown_type", "what")
    assert error.with_message_id(None) is error
    tagged = error.with_message_id("m")
    assert tagged.message_id == "m" and tagged.code == "unknown_type"
    assert tagged.with_message_id("other").message_id == "m"
    fatal = InvalidUtf8Error("bad bytes")
    assert isinstance(fatal.with_message_id("m"), InvalidUtf8Error)
    assert "unknown_type" in repr(error) and error.grpc_code == 3


def test_strict_encoders_refuse_what_legacy_cannot_say() -> None:
    refused = [
        sync_pb2.SyncRequest(),
        sync_pb2.SyncRequest(subscribe=sync_pb2.Subscribe(collection_id="c")),
        sync_pb2.SyncRequest(presence=sync_pb2.SetPresence(action=types_pb2.PRESENCE_ACTION_JOIN)),
        sync_pb2.SyncRequest(
            publish=sync_pb2.Publish(delta=types_pb2.Delta(delta=b"{}"))  # not JSON-encoded
        ),
        sync_pb2.SyncRequest(
            publish=sync_pb2.Publish(
                delta=types_pb2.Delta(encoding=types_pb2.PAYLOAD_ENCODING_JSON, delta=b"{")
            )
        ),
    ]
    for request in refused:
        with pytest.raises(UnrepresentableError):
            encode_request(request)
    for envelope in (
        types_pb2.Envelope(),
        types_pb2.Envelope(delta=types_pb2.Delta(replica_id=UUID)),  # no CRDT type
        types_pb2.Envelope(heartbeat=types_pb2.Heartbeat(replica_id="x")),
        types_pb2.Envelope(
            binary_ack=types_pb2.BinaryAck(peer_id=UUID, timestamp=Timestamp(nanos=-1))
        ),
    ):
        with pytest.raises(UnrepresentableError):
            encode_envelope(envelope)
