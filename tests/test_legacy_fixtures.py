"""Golden tests: every legacy protocol fixture, as `tests/fixtures/legacy/INDEX.md` says.

The fixtures are copied from the protocol reference so a clean clone is self-contained.
Each valid one must decode in its documented direction(s) and encode back to the same JSON
value (ignored client fields aside; UUIDs may come back lowercase); each invalid one must
give its documented error code. Directions and codes are read from INDEX.md itself, so
the index and these tests cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from server.legacy import (
    MAX_MESSAGE_BYTES,
    InvalidUtf8Error,
    LegacyProtocolError,
    check_message_size,
    decode_client_message,
    decode_server_message,
    encode_envelope,
    encode_request,
    encode_response,
    format_rfc3339,
    parse_rfc3339,
    render_error,
    render_for_legacy,
)
from syncwire.v1 import sync_pb2, types_pb2
from tests.legacy_strategies import canonical, exact_json, same_json

FIXTURES: Final = Path(__file__).resolve().parent / "fixtures" / "legacy"
C2S: Final = "C→S"
S2C: Final = "S→C"
UUID_KEYS: Final = frozenset({"replica_id", "peer_id"})
# What the server keeps of a client's shape A message; the rest is ignored by design.
CLIENT_KEYS: Final = {
    "sync": {"type", "data"},
    "presence": {"type", "action"},
    "heartbeat": {"type", "timestamp"},
}
SERVER_PEER_ID: Final = "0f7f6c1e-2b5a-4c3d-9e8f-7a6b5c4d3e2f"
SERVER_TIME: Final = Timestamp(seconds=1_757_000_131, nanos=500_000_000)


@dataclass(frozen=True)
class Row:
    """One fixture's line in INDEX.md."""

    name: str
    directions: frozenset[str]
    shape: str
    expected: str


def _index() -> dict[str, dict[str, Row]]:
    """INDEX.md's tables, by section (`valid`, `invalid`) and file name."""
    tables: dict[str, dict[str, Row]] = {}
    section = ""
    for line in (FIXTURES / "INDEX.md").read_text(encoding="utf-8").splitlines():
        heading = re.fullmatch(r"## (\w+)/", line)
        if heading:
            section = heading.group(1)
            tables[section] = {}
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if section and len(cells) == 5 and re.fullmatch(r"[\w.]+\.(json|txt)", cells[0]):
            name, directions, shape, _what, expected = cells
            tables[section][name] = Row(
                name, frozenset(directions.split(", ")), shape, expected.strip("`")
            )
    return tables


INDEX: Final = _index()
VALID: Final = sorted(INDEX["valid"])
INVALID: Final = sorted(name for name in INDEX["invalid"] if not name.endswith(".note.txt"))


def _raw(section: str, name: str) -> bytes:
    return (FIXTURES / section / name).read_bytes()


def _normalized(value: object) -> object:
    """The fixture as the translator writes it back: UUID ids lowercase."""
    if isinstance(value, dict):
        return {
            key: item.lower() if key in UUID_KEYS and isinstance(item, str) else _normalized(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_normalized(item) for item in value]
    return value


def _assert_same(actual: bytes, expected: object) -> None:
    assert canonical(exact_json(actual)) == canonical(expected), actual.decode()


def test_index_lists_every_fixture_file() -> None:
    for section in ("valid", "invalid"):
        on_disk = {path.name for path in (FIXTURES / section).iterdir()}
        assert on_disk == set(INDEX[section]), section
    assert len(VALID) == 35 and len(INVALID) == 23


@pytest.mark.parametrize("name", VALID)
def test_valid_fixture_round_trips(name: str) -> None:
    row = INDEX["valid"][name]
    raw = _raw("valid", name)
    expected = exact_json(raw)
    assert isinstance(expected, dict)
    assert row.directions <= {C2S, S2C} and row.directions
    if C2S in row.directions:
        _check_client_direction(row, raw, expected)
    else:
        _check_server_only_fixture_refused_from_clients(row, raw, expected)
    if S2C in row.directions:
        _check_server_direction(row, raw, expected)


def _check_client_direction(row: Row, raw: bytes, expected: dict[str, object]) -> None:
    message = decode_client_message(raw)
    assert decode_client_message(raw.decode("utf-8")) == message  # text frames as str too
    if row.shape == "B":
        assert message.envelope is not None and message.is_wrapper
        wanted = _normalized({**expected, "message_id": expected.get("message_id")})
        _assert_same(encode_envelope(message.envelope), wanted)
        _check_wrapper_relay(message.envelope, expected)
        return
    assert row.shape == "A" and not message.is_wrapper
    keys = CLIENT_KEYS[str(expected["type"])]
    kept = {key: value for key, value in expected.items() if key in keys}
    _assert_same(encode_request(message.request), kept)
    _check_tagged_relay(message.request, expected)


def _check_tagged_relay(request: sync_pb2.SyncRequest, expected: dict[str, object]) -> None:
    """What every peer receives for this client message, rendered by the translator."""
    kind = request.WhichOneof("kind")
    if kind == "publish":
        delta = types_pb2.Delta()
        delta.CopyFrom(request.publish.delta)
        assert delta.collection_id == "" and delta.crdt_type == types_pb2.CRDT_TYPE_UNSPECIFIED
        delta.server_time.CopyFrom(SERVER_TIME)
        delta.peer_id = SERVER_PEER_ID
        out = render_for_legacy(sync_pb2.SyncResponse(delta=delta))
        assert out is not None
        _assert_same(
            out,
            {
                "type": "sync",
                "peer_id": SERVER_PEER_ID,
                "data": expected["data"],
                "timestamp": format_rfc3339(SERVER_TIME),
            },
        )
    elif kind == "presence":
        assert request.presence.action == types_pb2.PRESENCE_ACTION_UPDATE
        presence = types_pb2.Presence(
            peer_id=SERVER_PEER_ID,
            status=request.presence.status,
            action=request.presence.action,
            timestamp=SERVER_TIME,
        )
        out = render_for_legacy(sync_pb2.SyncResponse(presence=presence))
        assert out is not None and orjson.loads(out)["action"] == expected["action"]
    else:
        assert kind == "heartbeat"


def _check_wrapper_relay(envelope: types_pb2.Envelope, expected: dict[str, object]) -> None:
    """A relayed wrapper Delta keeps its collection and exact bytes in both output forms."""
    if envelope.WhichOneof("message") != "delta":
        return
    message = expected["message"]
    assert isinstance(message, dict)
    body = _normalized(message["Delta"])
    relayed = sync_pb2.SyncResponse(delta=envelope.delta)
    relayed.delta.peer_id = SERVER_PEER_ID
    relayed.delta.server_time.CopyFrom(SERVER_TIME)
    as_wrapper = render_for_legacy(relayed, wrapper=True)
    assert as_wrapper is not None
    _assert_same(as_wrapper, {"version": 1, "message": {"Delta": body}, "message_id": None})
    as_sync = render_for_legacy(relayed, wrapper=False)
    assert as_sync is not None
    _assert_same(
        as_sync,
        {
            "type": "sync",
            "peer_id": SERVER_PEER_ID,
            "data": body,
            "timestamp": format_rfc3339(SERVER_TIME),
        },
    )


def _check_server_only_fixture_refused_from_clients(
    row: Row, raw: bytes, expected: dict[str, object]
) -> None:
    """README 6: client-sent welcome/binary_ack/error are unknown types; a client-sent
    wrapper Welcome/BinaryAck is invalid. Server-only shape A forms that a client may
    legitimately send too (presence, sync, heartbeat) are accepted."""
    if row.shape == "B":
        with pytest.raises(LegacyProtocolError) as caught:
            decode_client_message(raw)
        assert caught.value.code == "invalid_message"
    elif expected["type"] in ("welcome", "binary_ack", "error"):
        with pytest.raises(LegacyProtocolError) as caught:
            decode_client_message(raw)
        assert caught.value.code == "unknown_type"
    else:
        decode_client_message(raw)


def _check_server_direction(row: Row, raw: bytes, expected: dict[str, object]) -> None:
    decoded = decode_server_message(raw)
    if row.shape == "B":
        assert isinstance(decoded, types_pb2.Envelope)
        _assert_same(encode_envelope(decoded), _normalized(expected))
    else:
        assert isinstance(decoded, sync_pb2.SyncResponse)
        out = encode_response(decoded)
        assert out is not None
        _assert_same(out, expected)
        assert render_for_legacy(decoded) == out


@pytest.mark.parametrize("name", INVALID)
def test_invalid_fixture_gives_documented_error(name: str) -> None:
    row = INDEX["invalid"][name]
    raw = _raw("invalid", name)
    payloads: list[str | bytes] = [raw, raw.decode("utf-8")]
    for payload in payloads:
        with pytest.raises(LegacyProtocolError) as caught:
            decode_client_message(payload)
        error = caught.value
        assert error.code == row.expected, error
        assert error.reason.strip()
        assert error.close_code is None
        assert error.message_id == _wrapper_message_id(raw)
        _check_error_frame(error)


def _wrapper_message_id(raw: bytes) -> str | None:
    """The string `message_id` of a wrapper-shaped fixture, which the error must carry."""
    try:
        value = exact_json(raw)
    except (ValueError, RecursionError):  # the malformed-JSON fixtures
        return None
    if isinstance(value, dict) and "type" not in value:
        message_id = value.get("message_id")
        return message_id if isinstance(message_id, str) else None
    return None


def _check_error_frame(error: LegacyProtocolError) -> None:
    at = Timestamp(seconds=1_757_000_134, nanos=500_000_000)
    frame = render_error(error, at)
    value = orjson.loads(frame)  # strict JSON by construction
    expected_keys = {"type", "code", "reason", "timestamp"}
    if error.message_id is not None:
        expected_keys.add("message_id")
        assert value["message_id"] == error.message_id
    assert set(value) == expected_keys
    assert value["type"] == "error" and value["code"] == error.code
    assert value["reason"] == error.reason
    assert parse_rfc3339(value["timestamp"]) == at
    # A legacy-speaking client reads it back as the typed Error.
    decoded = decode_server_message(frame)
    assert isinstance(decoded, sync_pb2.SyncResponse)
    assert decoded.error.reason_code == error.code
    assert decoded.error.code == error.grpc_code
    assert decoded.message_id == (error.message_id or "")


def test_error_frame_defaults_to_the_current_time() -> None:
    frame = orjson.loads(render_error(LegacyProtocolError("invalid_json", "bad")))
    stamp = parse_rfc3339(frame["timestamp"])
    now = Timestamp()
    now.GetCurrentTime()
    assert stamp is not None and abs(stamp.seconds - now.seconds) <= 5


def _binary_garbage() -> bytes:
    note = (FIXTURES / "invalid" / "binary_garbage.note.txt").read_text(encoding="utf-8")
    hex_lines = re.findall(r"^\s+([0-9a-f]{32})$", note, flags=re.MULTILINE)
    return bytes.fromhex("".join(hex_lines))


def test_binary_garbage_is_fatal_as_text_and_fine_as_binary() -> None:
    garbage = _binary_garbage()
    assert len(garbage) == 64
    with pytest.raises(InvalidUtf8Error) as caught:
        decode_client_message(garbage)
    assert caught.value.close_code == 1007
    assert isinstance(caught.value, LegacyProtocolError)  # callers need one except clause
    # As a binary frame it is opaque: only its size matters, for the binary_ack.
    assert check_message_size(garbage) == 64
    ack = types_pb2.BinaryAck(peer_id=SERVER_PEER_ID, size=64, timestamp=SERVER_TIME)
    out = render_for_legacy(sync_pb2.SyncResponse(binary_ack=ack))
    assert out is not None and orjson.loads(out)["size"] == 64


def _oversize_payload(total: int) -> str:
    """The note's recipe: `{"type":"sync","data":{"pad":"xxx…"}}` of `total` UTF-8 bytes."""
    frame = '{"type":"sync","data":{"pad":"' + "x" * (total - 33) + '"}}'
    assert len(frame.encode("utf-8")) == total
    return frame


def test_oversize_limit_is_one_mib_inclusive() -> None:
    assert MAX_MESSAGE_BYTES == 1_048_576
    at_limit = _oversize_payload(1_048_576)
    for payload in (at_limit, at_limit.encode("utf-8")):
        message = decode_client_message(payload)
        data_size = len(message.request.publish.delta.delta)
        assert data_size == 1_048_576 - len('{"type":"sync","data":}')
        relayed = message.request.publish.delta
        relayed.peer_id = SERVER_PEER_ID
        out = render_for_legacy(sync_pb2.SyncResponse(delta=relayed))
        assert out is not None and len(out) > MAX_MESSAGE_BYTES  # relays may exceed it
    over = _oversize_payload(1_048_577)
    for payload in (over, over.encode("utf-8")):
        with pytest.raises(LegacyProtocolError) as caught:
            decode_client_message(payload)
        assert caught.value.code == "message_too_large" and caught.value.grpc_code == 8
    assert check_message_size(b"\0" * 1_048_576) == 1_048_576
    with pytest.raises(LegacyProtocolError, match="message_too_large"):
        check_message_size(b"\0" * 1_048_577)


def test_sync_rebroadcast_fixture_matches_relay_of_its_client_form() -> None:
    """a_sync_client_nested (C→S) relayed is a_sync_rebroadcast (S→C), data-exactly."""
    client = decode_client_message(_raw("valid", "a_sync_client_nested.json"))
    rebroadcast = decode_server_message(_raw("valid", "a_sync_rebroadcast.json"))
    assert isinstance(rebroadcast, sync_pb2.SyncResponse)
    assert same_json(client.request.publish.delta.delta, rebroadcast.delta.delta)
