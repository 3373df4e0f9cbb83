"""Shape A, the old server's type-tagged messages <-> typed SyncRequest/SyncResponse.

Client to server: `sync` -> publish of a JSON-encoded Delta (its `data`, byte-exact, in
the home collection the session fills in), `presence` -> SetPresence UPDATE with the
action string as status, `heartbeat` -> Heartbeat. Server to client: welcome, presence
(connected = PeerJoin, disconnected = PeerLeave, other actions = Presence), sync (a
relayed Delta), heartbeat, binary_ack and syncwire's `error` extension.

Encoders never raise for a well-formed typed message: they return None for kinds the old
protocol lacks and write sensible stand-ins (epoch, 0) for required values left unset.
"""

from __future__ import annotations

from typing import Final

import grpc
import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from server.legacy.errors import (
    GRPC_CODE_BY_ERROR_CODE,
    LegacyProtocolError,
    UnrepresentableError,
    invalid_message,
)
from server.legacy.fields import U32_MAX, JsonObject, as_object, as_str, as_uint, require
from server.legacy.strict_json import MAX_DEPTH, Payload, exact_value_bytes, is_strict_json
from server.legacy.timefmt import format_rfc3339, parse_rfc3339
from server.legacy.wrapper import delta_body
from syncwire.v1 import sync_pb2, types_pb2
from wire.status import code_to_number, number_to_code

CONNECTED: Final = "connected"
DISCONNECTED: Final = "disconnected"
CLIENT_TYPES: Final = ("sync", "presence", "heartbeat")

_JSON = types_pb2.PAYLOAD_ENCODING_JSON
_JOIN_LEAVE: Final = (types_pb2.PRESENCE_ACTION_JOIN, types_pb2.PRESENCE_ACTION_LEAVE)
# `data` sits one level inside the message object, so it may nest one level less.
_DATA_MAX_DEPTH: Final = MAX_DEPTH - 1


# --- decoding ---------------------------------------------------------------------------


def message_type(obj: JsonObject) -> str:
    """The `type` of a shape A object; `invalid_message` unless it is a string."""
    return as_str(obj["type"], "`type`")


def decode_request(obj: JsonObject, payload: Payload) -> sync_pb2.SyncRequest:
    """A client's shape A message -> typed request. `payload` is the frame it came from."""
    kind = message_type(obj)
    # Fields are assigned one by one: upb builds nested messages faster that way than
    # through keyword constructors, and `sync` is the hot path of every legacy fan-out.
    request = sync_pb2.SyncRequest()
    if kind == "sync":
        require(obj, "data", "sync")
        delta = request.publish.delta
        delta.encoding = _JSON
        delta.delta = exact_value_bytes(obj["data"], payload, "data")
        return request
    if kind == "presence":
        presence = request.presence
        presence.status = as_str(require(obj, "action", "presence"), "presence.action")
        presence.action = types_pb2.PRESENCE_ACTION_UPDATE
        return request
    if kind == "heartbeat":
        # Optional and ignored by the server; kept when readable so it round-trips.
        request.heartbeat.SetInParent()
        raw = obj.get("timestamp")
        timestamp = parse_rfc3339(raw) if isinstance(raw, str) else None
        if timestamp is not None:
            request.heartbeat.timestamp.CopyFrom(timestamp)
        return request
    raise LegacyProtocolError(
        "unknown_type",
        f"unknown message type {kind[:64]!r}; clients send {', '.join(CLIENT_TYPES)}",
    )


def decode_response(obj: JsonObject, payload: Payload) -> sync_pb2.SyncResponse:
    """A server's shape A message -> typed response (for legacy-speaking test clients)."""
    kind = message_type(obj)
    if kind == "sync":
        require(obj, "data", "sync")
        delta = types_pb2.Delta(
            peer_id=_str(obj, "peer_id", kind),
            server_time=_time(obj, kind),
            encoding=_JSON,
            delta=exact_value_bytes(obj["data"], payload, "data"),
        )
        return sync_pb2.SyncResponse(delta=delta)
    if kind == "presence":
        return _presence_response(
            _str(obj, "peer_id", kind), _str(obj, "action", kind), _time(obj, kind)
        )
    if kind == "welcome":
        info = as_object(require(obj, "server_info", kind), "welcome.server_info")
        where = "welcome.server_info"
        server_info = types_pb2.ServerInfo(
            version=_str(info, "version", where),
            max_connections=as_uint(
                require(info, "max_connections", where), f"{where}.max_connections"
            ),
            heartbeat_interval_seconds=as_uint(
                require(info, "heartbeat_interval", where), f"{where}.heartbeat_interval", U32_MAX
            ),
        )
        welcome = types_pb2.Welcome(
            peer_id=_str(obj, "peer_id", kind), timestamp=_time(obj, kind), server_info=server_info
        )
        return sync_pb2.SyncResponse(welcome=welcome)
    if kind == "heartbeat":
        heartbeat = types_pb2.Heartbeat(
            timestamp=_time(obj, kind), server_id=_str(obj, "server_id", kind)
        )
        return sync_pb2.SyncResponse(heartbeat=heartbeat)
    if kind == "binary_ack":
        ack = types_pb2.BinaryAck(
            peer_id=_str(obj, "peer_id", kind),
            size=as_uint(require(obj, "size", kind), "binary_ack.size"),
            timestamp=_time(obj, kind),
        )
        return sync_pb2.SyncResponse(binary_ack=ack)
    if kind == "error":
        return _error_response(obj)
    raise LegacyProtocolError("unknown_type", f"unknown message type {kind[:64]!r}")


def _presence_response(peer_id: str, action: str, timestamp: Timestamp) -> sync_pb2.SyncResponse:
    if action == CONNECTED:
        return sync_pb2.SyncResponse(
            peer_join=types_pb2.PeerJoin(peer_id=peer_id, timestamp=timestamp)
        )
    if action == DISCONNECTED:
        return sync_pb2.SyncResponse(
            peer_leave=types_pb2.PeerLeave(peer_id=peer_id, timestamp=timestamp)
        )
    presence = types_pb2.Presence(
        peer_id=peer_id,
        status=action,
        action=types_pb2.PRESENCE_ACTION_UPDATE,
        timestamp=timestamp,
    )
    return sync_pb2.SyncResponse(presence=presence)


def _error_response(obj: JsonObject) -> sync_pb2.SyncResponse:
    code = _str(obj, "code", "error")
    raw_id = obj.get("message_id")
    message_id = "" if raw_id is None else as_str(raw_id, "error.message_id")
    error = sync_pb2.Error(
        code=GRPC_CODE_BY_ERROR_CODE.get(code) or _status_number(code),
        reason_code=code,
        message=_str(obj, "reason", "error"),
        timestamp=_time(obj, "error"),
    )
    return sync_pb2.SyncResponse(error=error, message_id=message_id)


def _status_number(name: str) -> int:
    """The gRPC status number an error code names (`permission_denied` -> 7), else UNKNOWN."""
    status = grpc.StatusCode.__members__.get(name.upper(), grpc.StatusCode.UNKNOWN)
    return code_to_number(status)


def _str(obj: JsonObject, key: str, where: str) -> str:
    return as_str(require(obj, key, where), f"{where}.{key}")


def _time(obj: JsonObject, where: str) -> Timestamp:
    text = _str(obj, "timestamp", where)
    timestamp = parse_rfc3339(text)
    if timestamp is None:
        raise invalid_message(f"{where}.timestamp must be an RFC 3339 date-time, got {text[:64]!r}")
    return timestamp


# --- encoding ---------------------------------------------------------------------------


def encode_response(response: sync_pb2.SyncResponse) -> bytes | None:
    """A typed server message as the JSON a legacy client expects, or None if it has none.

    Pure: the same response always gives the same bytes, so a fan-out renders it once.
    Subscribed, Unsubscribed, PublishAck and Disconnect have no legacy form.
    """
    kind = response.WhichOneof("kind")
    obj: JsonObject
    if kind == "delta":
        delta = response.delta
        obj = {
            "type": "sync",
            "peer_id": delta.peer_id,
            "data": sync_data(delta),
            "timestamp": format_rfc3339(delta.server_time),
        }
    elif kind == "peer_join":
        join = response.peer_join
        obj = _presence(join.peer_id, CONNECTED, join.timestamp)
    elif kind == "peer_leave":
        leave = response.peer_leave
        obj = _presence(leave.peer_id, DISCONNECTED, leave.timestamp)
    elif kind == "presence":
        presence = response.presence
        obj = _presence(presence.peer_id, presence_action(presence), presence.timestamp)
    elif kind == "welcome":
        welcome = response.welcome
        info = welcome.server_info
        obj = {
            "type": "welcome",
            "peer_id": welcome.peer_id,
            "timestamp": format_rfc3339(welcome.timestamp),
            "server_info": {
                "version": info.version,
                "max_connections": info.max_connections,
                "heartbeat_interval": info.heartbeat_interval_seconds,
            },
        }
    elif kind == "heartbeat":
        heartbeat = response.heartbeat
        obj = {
            "type": "heartbeat",
            "timestamp": format_rfc3339(heartbeat.timestamp),
            "server_id": heartbeat.server_id,
        }
    elif kind == "binary_ack":
        ack = response.binary_ack
        obj = {
            "type": "binary_ack",
            "peer_id": ack.peer_id,
            "size": ack.size,
            "timestamp": format_rfc3339(ack.timestamp),
        }
    elif kind == "error":
        error = response.error
        code = error.reason_code or number_to_code(error.code).name.lower()
        obj = error_object(
            code, error.message or code, error.timestamp, response.message_id or None
        )
    else:
        return None
    return orjson.dumps(obj)


def sync_data(delta: types_pb2.Delta) -> object:
    """The `data` of a `sync` relaying `delta`.

    A JSON-encoded Delta whose bytes are strict JSON is embedded byte for byte
    (orjson.Fragment: no re-parse, no rounding). Any other Delta is described by its body
    (collection_id, crdt_type name, delta as a byte array, timestamp object, replica_id),
    so its collection and exact bytes reach legacy receivers.
    """
    if delta.encoding == _JSON and is_strict_json(delta.delta, _DATA_MAX_DEPTH):
        return orjson.Fragment(delta.delta)
    return delta_body(delta, strict=False)


def presence_action(presence: types_pb2.Presence) -> str:
    """The legacy `action` string: the status verbatim; an empty JOIN/LEAVE status reads
    as connected/disconnected (the old server's words for joining and leaving)."""
    if presence.status or presence.action not in _JOIN_LEAVE:
        return presence.status
    return CONNECTED if presence.action == types_pb2.PRESENCE_ACTION_JOIN else DISCONNECTED


def _presence(peer_id: str, action: str, timestamp: Timestamp) -> JsonObject:
    return {
        "type": "presence",
        "peer_id": peer_id,
        "action": action,
        "timestamp": format_rfc3339(timestamp),
    }


def error_object(
    code: str, reason: str, timestamp: Timestamp, message_id: str | None
) -> JsonObject:
    """The syncwire `error` message (README section 6); `message_id` only when given."""
    obj: JsonObject = {
        "type": "error",
        "code": code,
        "reason": reason,
        "timestamp": format_rfc3339(timestamp),
    }
    if message_id is not None:
        obj["message_id"] = message_id
    return obj


def encode_request(request: sync_pb2.SyncRequest) -> bytes:
    """A typed client request as a shape A message (for legacy-speaking clients and tests).

    Only what shape A can say: a JSON-encoded publish (its bytes must be strict JSON),
    an UPDATE presence, a heartbeat. Anything else raises `UnrepresentableError`; send
    Deltas with a CRDT type as a wrapper instead.
    """
    kind = request.WhichOneof("kind")
    if kind == "publish":
        delta = request.publish.delta
        if delta.encoding != _JSON or not is_strict_json(delta.delta, _DATA_MAX_DEPTH):
            raise UnrepresentableError("a shape A sync carries strict JSON data only")
        return orjson.dumps({"type": "sync", "data": orjson.Fragment(delta.delta)})
    if kind == "presence":
        presence = request.presence
        if presence.action not in (
            types_pb2.PRESENCE_ACTION_UPDATE,
            types_pb2.PRESENCE_ACTION_UNSPECIFIED,
        ):
            raise UnrepresentableError("shape A presence carries an UPDATE status only")
        return orjson.dumps({"type": "presence", "action": presence.status})
    if kind == "heartbeat":
        obj: JsonObject = {"type": "heartbeat"}
        if request.heartbeat.HasField("timestamp"):
            obj["timestamp"] = format_rfc3339(request.heartbeat.timestamp)
        return orjson.dumps(obj)
    raise UnrepresentableError(f"shape A has no client message for {kind or 'an empty request'}")
