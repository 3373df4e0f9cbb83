"""Hypothesis strategies and exact JSON comparison for the legacy translator tests.

The strategies draw only typed messages a legacy shape can hold (the canonical subset),
so translating them to legacy JSON and back must give the same message. JSON values are
compared with `exact_json`: the standard library keeps integers of any size exact, and
`canonical` tells ints from floats and -0.0 from 0.0, which `==` would not.
"""

from __future__ import annotations

import json
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

from server.legacy.errors import GRPC_CODE_BY_ERROR_CODE
from syncwire.v1 import sync_pb2, types_pb2

MIN_SECONDS: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_SECONDS: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
U64_MAX: Final = 2**64 - 1
U32_MAX: Final = 2**32 - 1

CRDT_TYPES: Final = [value for value in types_pb2.CrdtType.values() if value]
JOIN_LEAVE_UPDATE: Final = [
    types_pb2.PRESENCE_ACTION_JOIN,
    types_pb2.PRESENCE_ACTION_LEAVE,
    types_pb2.PRESENCE_ACTION_UPDATE,
]


# --- exact JSON ------------------------------------------------------------------------


def _reject_constant(name: str) -> object:
    raise ValueError(f"not strict JSON: {name}")


def exact_json(text: str | bytes) -> object:
    """Parse strict JSON keeping every integer exact (the standard library's big ints)."""
    return json.loads(text, parse_constant=_reject_constant)


def canonical(value: object) -> object:
    """A form whose `==` is exact JSON value equality: 1 != 1.0, -0.0 != 0.0."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, list):
        return [canonical(item) for item in value]
    assert isinstance(value, dict), type(value)
    return {key: canonical(item) for key, item in value.items()}


def same_json(left: str | bytes, right: str | bytes) -> bool:
    """Whether two JSON texts hold exactly the same value (key order, spacing aside)."""
    return canonical(exact_json(left)) == canonical(exact_json(right))


# --- JSON values -----------------------------------------------------------------------

text: Final = st.text(st.characters(codec="utf-8"), max_size=12)
"""Any Unicode text JSON can carry (no lone surrogates)."""

EDGE_INTEGERS: Final = [
    0,
    -1,
    2**53 + 1,
    U64_MAX,
    -(2**63),
    2**64,  # beyond 64 bits: orjson alone would round these
    -(2**63) - 1,
    10**30,
    -(10**40) + 7,
]
EDGE_FLOATS: Final = [-0.0, 0.0, 5e-324, 1.7976931348623157e308, 1e21, 1e-7, 0.1, 1e16]

json_scalars: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.sampled_from(EDGE_INTEGERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(EDGE_FLOATS),
    text,
)

json_values: Final = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=24,
)


@st.composite
def deep_json_values(draw: st.DrawFn, max_depth: int = 62) -> object:
    """A JSON value wrapped in up to `max_depth` arrays/objects (the message adds 1)."""
    value = draw(json_scalars)
    for as_list in draw(st.lists(st.booleans(), max_size=max_depth)):
        value = [value] if as_list else {draw(text): value}
    return value


def dump_data(value: object) -> bytes:
    """A JSON value as compact UTF-8 JSON, exact for any integer size."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


json_payloads: Final = st.one_of(json_values, deep_json_values()).map(dump_data)


# --- typed building blocks --------------------------------------------------------------

uuids: Final = st.uuids().map(str)
u64s: Final = st.integers(0, U64_MAX)
u32s: Final = st.integers(0, U32_MAX)
rfc3339_times: Final = st.builds(
    Timestamp, seconds=st.integers(MIN_SECONDS, MAX_SECONDS), nanos=st.integers(0, 999_999_999)
)
"""Any Timestamp an RFC 3339 string can name (years 1 to 9999)."""
system_times: Final = st.builds(
    Timestamp, seconds=st.integers(0, MAX_SECONDS), nanos=st.integers(0, 999_999_999)
)
"""Any Timestamp serde's SystemTime object can carry (1970 onwards)."""


def optional(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    """Sometimes None (an unset `optional` field)."""
    return st.none() | strategy


# --- shape A ---------------------------------------------------------------------------


def _publish(data: bytes) -> sync_pb2.SyncRequest:
    delta = types_pb2.Delta(encoding=types_pb2.PAYLOAD_ENCODING_JSON, delta=data)
    return sync_pb2.SyncRequest(publish=sync_pb2.Publish(delta=delta))


def _set_presence(status: str) -> sync_pb2.SyncRequest:
    presence = sync_pb2.SetPresence(action=types_pb2.PRESENCE_ACTION_UPDATE, status=status)
    return sync_pb2.SyncRequest(presence=presence)


def _heartbeat_request(timestamp: Timestamp | None) -> sync_pb2.SyncRequest:
    return sync_pb2.SyncRequest(heartbeat=types_pb2.Heartbeat(timestamp=timestamp))


tagged_requests: Final = st.one_of(
    json_payloads.map(_publish),
    text.map(_set_presence),
    st.one_of(st.none(), rfc3339_times).map(_heartbeat_request),
)
"""Client requests shape A can carry: JSON publish, UPDATE presence, heartbeat."""

statuses: Final = text.filter(lambda status: status not in ("connected", "disconnected"))

_server_infos = st.builds(
    types_pb2.ServerInfo,
    version=text,
    max_connections=u64s,
    heartbeat_interval_seconds=u32s,
)
_error_codes = st.sampled_from(sorted(GRPC_CODE_BY_ERROR_CODE))


def _error(code: str, reason: str, timestamp: Timestamp, message_id: str) -> sync_pb2.SyncResponse:
    error = sync_pb2.Error(
        code=GRPC_CODE_BY_ERROR_CODE[code], reason_code=code, message=reason, timestamp=timestamp
    )
    return sync_pb2.SyncResponse(error=error, message_id=message_id)


def _json_delta(peer_id: str, server_time: Timestamp, data: bytes) -> types_pb2.Delta:
    return types_pb2.Delta(
        peer_id=peer_id,
        server_time=server_time,
        encoding=types_pb2.PAYLOAD_ENCODING_JSON,
        delta=data,
    )


tagged_responses: Final = st.one_of(
    st.builds(
        sync_pb2.SyncResponse,
        welcome=st.builds(
            types_pb2.Welcome, peer_id=text, timestamp=rfc3339_times, server_info=_server_infos
        ),
    ),
    st.builds(
        sync_pb2.SyncResponse,
        peer_join=st.builds(types_pb2.PeerJoin, peer_id=text, timestamp=rfc3339_times),
    ),
    st.builds(
        sync_pb2.SyncResponse,
        peer_leave=st.builds(types_pb2.PeerLeave, peer_id=text, timestamp=rfc3339_times),
    ),
    st.builds(
        sync_pb2.SyncResponse,
        presence=st.builds(
            types_pb2.Presence,
            peer_id=text,
            status=statuses,
            action=st.just(types_pb2.PRESENCE_ACTION_UPDATE),
            timestamp=rfc3339_times,
        ),
    ),
    st.builds(
        sync_pb2.SyncResponse,
        delta=st.builds(_json_delta, text, rfc3339_times, json_payloads),
    ),
    st.builds(
        sync_pb2.SyncResponse,
        heartbeat=st.builds(types_pb2.Heartbeat, timestamp=rfc3339_times, server_id=text),
    ),
    st.builds(
        sync_pb2.SyncResponse,
        binary_ack=st.builds(types_pb2.BinaryAck, peer_id=text, size=u64s, timestamp=rfc3339_times),
    ),
    st.builds(_error, _error_codes, text.filter(bool), rfc3339_times, text),
)
"""Server messages shape A can carry, in the form its decoder produces."""


# --- shape B ---------------------------------------------------------------------------

_user_infos = st.builds(
    types_pb2.UserInfo,
    user_id=text,
    username=optional(text),
    display_name=optional(text),
    avatar_url=optional(text),
)
_wrapper_server_infos = st.builds(
    types_pb2.ServerInfo,
    version=text,
    max_connections=st.none() | u64s,
    features=st.lists(text, max_size=4),
)

_client_variants: Final[dict[str, st.SearchStrategy[object]]] = {
    "delta": st.builds(
        types_pb2.Delta,
        collection_id=text,
        crdt_type=st.sampled_from(CRDT_TYPES),
        delta=st.binary(max_size=64),
        timestamp=system_times,
        replica_id=uuids,
    ),
    "heartbeat": st.builds(types_pb2.Heartbeat, replica_id=uuids, timestamp=system_times),
    "peer_join": st.builds(types_pb2.PeerJoin, peer_id=uuids, user_info=st.none() | _user_infos),
    "peer_leave": st.builds(types_pb2.PeerLeave, peer_id=uuids),
    "presence": st.builds(
        types_pb2.Presence,
        peer_id=uuids,
        action=st.sampled_from(JOIN_LEAVE_UPDATE),
        timestamp=system_times,
    ),
}
_server_variants: Final[dict[str, st.SearchStrategy[object]]] = {
    **_client_variants,
    "welcome": st.builds(
        types_pb2.Welcome,
        peer_id=uuids,
        timestamp=system_times,
        server_info=st.none() | _wrapper_server_infos,
    ),
    "binary_ack": st.builds(types_pb2.BinaryAck, peer_id=uuids, size=u64s, timestamp=system_times),
}


def _envelopes(
    variants: dict[str, st.SearchStrategy[object]],
) -> st.SearchStrategy[types_pb2.Envelope]:
    def build(
        version: int, message_id: str | None, kind: str, message: object
    ) -> types_pb2.Envelope:
        envelope = types_pb2.Envelope(version=version, message_id=message_id)
        getattr(envelope, kind).CopyFrom(message)
        return envelope

    return st.one_of(
        [
            st.builds(build, st.integers(0, 1), optional(text), st.just(kind), strategy)
            for kind, strategy in variants.items()
        ]
    )


client_envelopes: Final = _envelopes(_client_variants)
"""Wrappers a client may send: Delta, Heartbeat, PeerJoin, PeerLeave, Presence."""
server_envelopes: Final = _envelopes(_server_variants)
"""Every wrapper variant, as a server may send it."""


# --- anything a server might relay ------------------------------------------------------

any_timestamps: Final = st.builds(
    Timestamp,
    seconds=st.integers(-(2**63), 2**63 - 1),
    nanos=st.integers(-(2**31), 2**31 - 1),
)
"""Timestamps including invalid ones (negative, far future, nanos out of range)."""

_any_deltas = st.builds(
    types_pb2.Delta,
    collection_id=text,
    crdt_type=st.sampled_from(list(types_pb2.CrdtType.values())),
    delta=st.one_of(st.binary(max_size=32), json_payloads, st.just(b"[" * 200 + b"]" * 200)),
    timestamp=st.none() | any_timestamps,
    replica_id=st.one_of(text, uuids, uuids.map(str.upper)),
    encoding=st.sampled_from(list(types_pb2.PayloadEncoding.values())),
    peer_id=text,
    server_time=st.none() | any_timestamps,
)

any_responses: Final = st.one_of(
    tagged_responses,
    st.builds(sync_pb2.SyncResponse, delta=_any_deltas, message_id=text),
    st.builds(
        sync_pb2.SyncResponse,
        presence=st.builds(
            types_pb2.Presence,
            peer_id=st.one_of(text, uuids),
            status=text,
            action=st.sampled_from(list(types_pb2.PresenceAction.values())),
            timestamp=st.none() | any_timestamps,
        ),
    ),
    st.builds(sync_pb2.SyncResponse, welcome=st.builds(types_pb2.Welcome, peer_id=text)),
    st.builds(
        sync_pb2.SyncResponse,
        error=st.builds(sync_pb2.Error, code=st.integers(0, 20), message=text),
    ),
    st.builds(sync_pb2.SyncResponse, publish_ack=st.builds(sync_pb2.PublishAck)),
    st.just(sync_pb2.SyncResponse()),
)
"""Typed server messages with arbitrary (even invalid) values: rendering must not fail."""
