"""Property tests: typed -> legacy JSON -> typed is the identity on what legacy can hold,
JSON `data` survives a relay value-exactly, and no input makes the translator fail with
anything but `LegacyProtocolError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

import orjson
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from server.legacy import (
    LegacyProtocolError,
    UnrepresentableError,
    decode_client_message,
    decode_server_message,
    encode_envelope,
    encode_request,
    encode_response,
    envelope_to_request,
    render_for_legacy,
)
from syncwire.v1 import sync_pb2, types_pb2
from tests.legacy_strategies import (
    any_responses,
    canonical,
    client_envelopes,
    deep_json_values,
    exact_json,
    json_scalars,
    json_values,
    rfc3339_times,
    same_json,
    server_envelopes,
    tagged_requests,
    tagged_responses,
    text,
    uuids,
)

RELAY_PEER = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"


def _without_json_payload(message: sync_pb2.SyncRequest | sync_pb2.SyncResponse) -> bytes:
    """The message with its JSON delta bytes cleared, for comparing everything else."""
    if isinstance(message, sync_pb2.SyncRequest):
        request = sync_pb2.SyncRequest()
        request.CopyFrom(message)
        if request.HasField("publish"):
            request.publish.delta.ClearField("delta")
        return request.SerializeToString(deterministic=True)
    response = sync_pb2.SyncResponse()
    response.CopyFrom(message)
    if response.HasField("delta"):
        response.delta.ClearField("delta")
    return response.SerializeToString(deterministic=True)


def _json_payload(message: sync_pb2.SyncRequest | sync_pb2.SyncResponse) -> bytes | None:
    if isinstance(message, sync_pb2.SyncRequest):
        return message.publish.delta.delta if message.HasField("publish") else None
    return message.delta.delta if message.HasField("delta") else None


def _assert_same_typed(
    back: sync_pb2.SyncRequest | sync_pb2.SyncResponse,
    original: sync_pb2.SyncRequest | sync_pb2.SyncResponse,
) -> None:
    """Equal messages, except that JSON payload bytes need only hold the same JSON value
    (the decoder writes `data` compactly, so spacing and escapes may differ)."""
    assert _without_json_payload(back) == _without_json_payload(original)
    payload = _json_payload(original)
    if payload is None:
        assert back == original
    else:
        returned = _json_payload(back)
        assert returned is not None and same_json(returned, payload)


@given(tagged_requests)
def test_tagged_client_requests_round_trip(request: sync_pb2.SyncRequest) -> None:
    frame = encode_request(request)
    message = decode_client_message(frame)
    assert not message.is_wrapper
    _assert_same_typed(message.request, request)


@given(tagged_responses)
def test_tagged_server_messages_round_trip(response: sync_pb2.SyncResponse) -> None:
    frame = encode_response(response)
    assert frame is not None
    decoded = decode_server_message(frame)
    assert isinstance(decoded, sync_pb2.SyncResponse)
    _assert_same_typed(decoded, response)
    assert render_for_legacy(response) == frame  # pure: one rendering serves every receiver


@given(client_envelopes)
def test_wrapper_client_messages_round_trip(envelope: types_pb2.Envelope) -> None:
    message = decode_client_message(encode_envelope(envelope))
    assert message.envelope == envelope
    assert message.request == envelope_to_request(envelope)
    assert message.message_id == (envelope.message_id if envelope.HasField("message_id") else None)


@given(server_envelopes)
def test_wrapper_server_messages_round_trip(envelope: types_pb2.Envelope) -> None:
    assert decode_server_message(encode_envelope(envelope)) == envelope


@given(server_envelopes)
def test_wrapper_ids_are_accepted_in_every_rust_uuid_form(envelope: types_pb2.Envelope) -> None:
    """Upper case, simple, braced and URN ids decode to the same canonical envelope."""
    frame = encode_envelope(envelope).decode()
    for spell in (str.upper, _simple, _braced, _urn):
        respelled = _respell_uuids(frame, spell)
        assert decode_server_message(respelled) == envelope


def _simple(uuid_text: str) -> str:
    return uuid_text.replace("-", "")


def _braced(uuid_text: str) -> str:
    return "{" + uuid_text.upper() + "}"


def _urn(uuid_text: str) -> str:
    return "urn:uuid:" + uuid_text


def _respell_uuids(frame: str, spell: Callable[[str], str]) -> str:
    value = json.loads(frame)
    (body,) = value["message"].values()
    for key in ("replica_id", "peer_id"):
        if key in body:
            body[key] = spell(body[key])
    return json.dumps(value)


@given(st.one_of(json_values, deep_json_values()), st.booleans())
def test_sync_data_is_relayed_value_exactly(data: object, ascii_only: bool) -> None:
    frame = json.dumps({"type": "sync", "data": data, "peer_id": "x"}, ensure_ascii=ascii_only)
    request = decode_client_message(frame).request
    payload = request.publish.delta.delta
    assert canonical(exact_json(payload)) == canonical(data)
    relayed = types_pb2.Delta()
    relayed.CopyFrom(request.publish.delta)
    relayed.peer_id = RELAY_PEER
    out = render_for_legacy(sync_pb2.SyncResponse(delta=relayed))
    assert out is not None
    received = exact_json(out)
    assert isinstance(received, dict)
    assert canonical(received["data"]) == canonical(data)
    assert received["peer_id"] == RELAY_PEER


@given(st.binary(max_size=256))
def test_random_bytes_only_raise_protocol_errors(payload: bytes) -> None:
    _decode_both_ways(payload)


@given(st.text(max_size=256))
def test_random_text_only_raises_protocol_errors(payload: str) -> None:
    _decode_both_ways(payload)


_KEYS = st.sampled_from(
    [
        "type",
        "data",
        "action",
        "peer_id",
        "timestamp",
        "server_info",
        "version",
        "message",
        "message_id",
        "Delta",
        "Heartbeat",
        "PeerJoin",
        "PeerLeave",
        "Presence",
        "Welcome",
        "BinaryAck",
        "collection_id",
        "crdt_type",
        "delta",
        "replica_id",
        "secs_since_epoch",
        "nanos_since_epoch",
        "user_info",
        "user_id",
        "features",
        "max_connections",
        "heartbeat_interval",
        "size",
        "server_id",
        "code",
        "reason",
    ]
)
_WORDS = st.sampled_from(
    ["sync", "presence", "heartbeat", "welcome", "error", "binary_ack", "LwwMap", "Join"]
)
_fuzz_values = st.recursive(
    st.one_of(json_scalars, _WORDS, uuids, rfc3339_times.map(lambda t: t.ToJsonString())),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.one_of(_KEYS, text), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _fuzz_values, max_size=5))
def test_message_like_objects_only_raise_protocol_errors(obj: dict[str, object]) -> None:
    _decode_both_ways(json.dumps(obj))


def _decode_both_ways(payload: str | bytes) -> None:
    """Decoding fails only with LegacyProtocolError; what decodes also re-encodes."""
    try:
        message = decode_client_message(payload)
    except LegacyProtocolError as error:
        assert error.reason
    else:
        if message.envelope is not None:
            encode_envelope(message.envelope)
        else:
            encode_request(message.request)
    try:
        decoded = decode_server_message(payload)
    except LegacyProtocolError as error:
        assert error.reason
    else:
        if isinstance(decoded, types_pb2.Envelope):
            encode_envelope(decoded)
        else:
            assert encode_response(decoded) is not None


_DELTA_AFTER_YEAR_9999: Final = sync_pb2.SyncResponse(
    delta=types_pb2.Delta(
        collection_id="c",
        crdt_type=types_pb2.CRDT_TYPE_LWW_REGISTER,
        delta=b"{}",
        replica_id="0b7f6f0e-3d53-4a5e-9d4b-0c1e2f3a4b5c",
        timestamp=Timestamp(seconds=253_402_300_800),
    )
)
"""A typed client may stamp a Delta past 9999-12-31 (once found by hypothesis): the
wrapper's SystemTime cannot carry it, so it must fall back to shape A, not emit a
wrapper that legacy parsers (and ours) refuse."""


@given(any_responses, st.booleans())
@example(_DELTA_AFTER_YEAR_9999, True)
def test_any_server_message_renders_to_strict_decodable_json(
    response: sync_pb2.SyncResponse, wrapper: bool
) -> None:
    """Whatever a typed client or the server put in a message, a legacy receiver gets
    strict JSON that a legacy parser accepts (or nothing, for kinds legacy lacks)."""
    frame = render_for_legacy(response, wrapper=wrapper)
    if frame is None:
        assert response.WhichOneof("kind") in (None, "publish_ack")
        return
    orjson.loads(frame)
    decoded = decode_server_message(frame)
    if response.HasField("delta"):
        _assert_delta_reaches_legacy(response.delta, decoded)


def _assert_delta_reaches_legacy(
    delta: types_pb2.Delta, decoded: sync_pb2.SyncResponse | types_pb2.Envelope
) -> None:
    """README 4: the collection and exact delta bytes reach every legacy receiver."""
    if isinstance(decoded, types_pb2.Envelope):
        assert decoded.delta.collection_id == delta.collection_id
        assert decoded.delta.delta == delta.delta
        return
    data = exact_json(decoded.delta.delta)
    if isinstance(data, dict) and set(data) == {
        "collection_id",
        "crdt_type",
        "delta",
        "timestamp",
        "replica_id",
    }:
        assert data["collection_id"] == delta.collection_id
        assert isinstance(data["delta"], list) and bytes(data["delta"]) == delta.delta
    else:
        assert delta.encoding == types_pb2.PAYLOAD_ENCODING_JSON
        assert same_json(decoded.delta.delta, delta.delta)


@given(text)
def test_wrapper_encoding_refuses_what_legacy_cannot_read(replica_id: str) -> None:
    envelope = types_pb2.Envelope(
        version=1, peer_leave=types_pb2.PeerLeave(peer_id=replica_id + "-not-a-uuid")
    )
    try:
        encode_envelope(envelope)
    except UnrepresentableError:
        return
    raise AssertionError("a non-UUID replica id was encoded")
