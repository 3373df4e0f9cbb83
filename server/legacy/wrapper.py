"""Shape B, the core `MessageWrapper` (serde, externally tagged) <-> typed `Envelope`.

`{"version": 1, "message": {"Delta": {...}}, "message_id": "m1"}` maps field for field
onto `Envelope`: enum names onto CrdtType/PresenceAction, SystemTime onto Timestamp, byte
arrays onto bytes, ReplicaId onto lowercase hyphenated UUID strings, `Option` onto unset
fields. The encoders read only the fields the wrapper has, so a typed message carrying
more (a relayed Delta's offset, peer id, server time) encodes to its wrapper form as is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeAlias

import orjson
from google.protobuf.message import Message

from server.legacy.errors import LegacyProtocolError, UnrepresentableError, invalid_message
from server.legacy.fields import (
    U32_MAX,
    JsonObject,
    as_bytes,
    as_object,
    as_str,
    as_uint,
    as_uuid,
    canonical_uuid,
    optional_str,
    require,
)
from server.legacy.timefmt import parse_systemtime, raw_systemtime, systemtime
from syncwire.v1 import sync_pb2, types_pb2

CURRENT_VERSION: Final = 1
"""Newest wrapper version understood; the old decoder accepted 0 and 1."""

CrdtType: TypeAlias = types_pb2.CrdtType.ValueType
PresenceAction: TypeAlias = types_pb2.PresenceAction.ValueType

CRDT_TYPE_BY_NAME: Final[dict[str, CrdtType]] = {
    "LwwRegister": types_pb2.CRDT_TYPE_LWW_REGISTER,
    "LwwMap": types_pb2.CRDT_TYPE_LWW_MAP,
    "GCounter": types_pb2.CRDT_TYPE_G_COUNTER,
    "RGA": types_pb2.CRDT_TYPE_RGA,
    "LSEQ": types_pb2.CRDT_TYPE_LSEQ,
    "YjsTree": types_pb2.CRDT_TYPE_YJS_TREE,
    "DAG": types_pb2.CRDT_TYPE_DAG,
    "Graph": types_pb2.CRDT_TYPE_GRAPH,
    "Tree": types_pb2.CRDT_TYPE_TREE,
}
CRDT_NAME: Final[dict[CrdtType, str]] = {value: name for name, value in CRDT_TYPE_BY_NAME.items()}

ACTION_BY_NAME: Final[dict[str, PresenceAction]] = {
    "Join": types_pb2.PRESENCE_ACTION_JOIN,
    "Leave": types_pb2.PRESENCE_ACTION_LEAVE,
    "Update": types_pb2.PRESENCE_ACTION_UPDATE,
}
ACTION_NAME: Final[dict[PresenceAction, str]] = {
    **{value: name for name, value in ACTION_BY_NAME.items()},
    types_pb2.PRESENCE_ACTION_UNSPECIFIED: "Update",  # "treated as UPDATE by the server"
}

SERVER_ONLY_VARIANTS: Final = frozenset({"Welcome", "BinaryAck"})


# --- decoding ---------------------------------------------------------------------------


def decode_wrapper(obj: JsonObject, *, from_client: bool) -> types_pb2.Envelope:
    """A parsed wrapper object -> Envelope, or `LegacyProtocolError` with the reason.

    Order follows README section 6: `version` (type, then value) before `message`. Errors
    carry the wrapper's `message_id` whenever it is a string, even if something else is
    wrong. `from_client` refuses the server-only variants (Welcome, BinaryAck).
    """
    raw_id = obj.get("message_id")
    message_id = raw_id if isinstance(raw_id, str) else None
    try:
        return _decode_wrapper(obj, raw_id, from_client)
    except LegacyProtocolError as exc:
        raise exc.with_message_id(message_id) from None


def _decode_wrapper(obj: JsonObject, raw_id: object, from_client: bool) -> types_pb2.Envelope:
    version = as_uint(require(obj, "version", "wrapper"), "wrapper.version", U32_MAX)
    if version > CURRENT_VERSION:
        raise LegacyProtocolError(
            "unsupported_version",
            f"unsupported protocol version {version}; this server speaks 0 and {CURRENT_VERSION}",
        )
    if raw_id is not None and not isinstance(raw_id, str):
        raise invalid_message("wrapper.message_id must be a string or null")
    message = as_object(require(obj, "message", "wrapper"), "wrapper.message")
    if len(message) != 1:
        raise invalid_message(
            f"wrapper.message must hold exactly one variant, got {len(message)}: "
            f"{[key[:64] for key in sorted(message)[:8]]}"
        )
    ((name, body),) = message.items()
    decoder = _DECODERS.get(name)
    if decoder is None:
        raise LegacyProtocolError("unknown_type", f"unknown message variant {name[:64]!r}")
    if from_client and name in SERVER_ONLY_VARIANTS:
        raise invalid_message(f"{name} is sent by servers only")
    envelope = types_pb2.Envelope(version=version, message_id=raw_id)
    decoder(as_object(body, name), envelope)
    return envelope


def _decode_delta(body: JsonObject, envelope: types_pb2.Envelope) -> None:
    delta = envelope.delta
    delta.collection_id = as_str(require(body, "collection_id", "Delta"), "Delta.collection_id")
    delta.crdt_type = _crdt_type(require(body, "crdt_type", "Delta"))
    delta.delta = as_bytes(require(body, "delta", "Delta"), "Delta.delta")
    delta.timestamp.CopyFrom(
        parse_systemtime(require(body, "timestamp", "Delta"), "Delta.timestamp")
    )
    delta.replica_id = as_uuid(require(body, "replica_id", "Delta"), "Delta.replica_id")


def _crdt_type(value: object) -> CrdtType:
    name = as_str(value, "Delta.crdt_type")
    try:
        return CRDT_TYPE_BY_NAME[name]
    except KeyError:
        raise invalid_message(
            f"Delta.crdt_type {name[:64]!r} is not one of {', '.join(CRDT_TYPE_BY_NAME)}"
        ) from None


def _decode_heartbeat(body: JsonObject, envelope: types_pb2.Envelope) -> None:
    heartbeat = envelope.heartbeat
    heartbeat.replica_id = as_uuid(require(body, "replica_id", "Heartbeat"), "Heartbeat.replica_id")
    heartbeat.timestamp.CopyFrom(
        parse_systemtime(require(body, "timestamp", "Heartbeat"), "Heartbeat.timestamp")
    )


def _decode_peer_join(body: JsonObject, envelope: types_pb2.Envelope) -> None:
    join = envelope.peer_join
    join.peer_id = as_uuid(require(body, "replica_id", "PeerJoin"), "PeerJoin.replica_id")
    user_info = body.get("user_info")
    if user_info is not None:
        join.user_info.CopyFrom(_user_info(as_object(user_info, "PeerJoin.user_info")))


def _user_info(obj: JsonObject) -> types_pb2.UserInfo:
    where = "UserInfo"
    return types_pb2.UserInfo(
        user_id=as_str(require(obj, "user_id", where), f"{where}.user_id"),
        username=optional_str(obj, "username", where),
        display_name=optional_str(obj, "display_name", where),
        avatar_url=optional_str(obj, "avatar_url", where),
    )


def _decode_peer_leave(body: JsonObject, envelope: types_pb2.Envelope) -> None:
    envelope.peer_leave.peer_id = as_uuid(
        require(body, "replica_id", "PeerLeave"), "PeerLeave.replica_id"
    )


def _decode_welcome(body: JsonObject, envelope: types_pb2.Envelope) -> None:
    welcome = envelope.welcome
    welcome.peer_id = as_uuid(require(body, "peer_id", "Welcome"), "Welcome.peer_id")
    welcome.timestamp.CopyFrom(
        parse_systemtime(require(body, "timestamp", "Welcome"), "Welcome.timestamp")
    )
    server_info = body.get("server_info")
    if server_info is not None:
        welcome.server_info.CopyFrom(_server_info(as_object(server_info, "Welcome.server_info")))


def _server_info(obj: JsonObject) -> types_pb2.ServerInfo:
    where = "ServerInfo"
    features = require(obj, "features", where)
    if not isinstance(features, list) or not all(isinstance(item, str) for item in features):
        raise invalid_message(f"{where}.features must be an array of strings")
    max_connections = obj.get("max_connections")
    return types_pb2.ServerInfo(
        version=as_str(require(obj, "version", where), f"{where}.version"),
        max_connections=(
            None
            if max_connections is None
            else as_uint(max_connections, f"{where}.max_connections")
        ),
        features=features,
    )


def _decode_presence(body: JsonObject, envelope: types_pb2.Envelope) -> None:
    presence = envelope.presence
    presence.peer_id = as_uuid(require(body, "peer_id", "Presence"), "Presence.peer_id")
    action = as_str(require(body, "action", "Presence"), "Presence.action")
    if action not in ACTION_BY_NAME:
        raise invalid_message(
            f"Presence.action {action[:64]!r} is not one of {', '.join(ACTION_BY_NAME)}"
        )
    presence.action = ACTION_BY_NAME[action]
    presence.timestamp.CopyFrom(
        parse_systemtime(require(body, "timestamp", "Presence"), "Presence.timestamp")
    )


def _decode_binary_ack(body: JsonObject, envelope: types_pb2.Envelope) -> None:
    ack = envelope.binary_ack
    ack.peer_id = as_uuid(require(body, "peer_id", "BinaryAck"), "BinaryAck.peer_id")
    ack.size = as_uint(require(body, "size", "BinaryAck"), "BinaryAck.size")
    ack.timestamp.CopyFrom(
        parse_systemtime(require(body, "timestamp", "BinaryAck"), "BinaryAck.timestamp")
    )


_DECODERS: Final[dict[str, Callable[[JsonObject, types_pb2.Envelope], None]]] = {
    "Delta": _decode_delta,
    "Heartbeat": _decode_heartbeat,
    "PeerJoin": _decode_peer_join,
    "PeerLeave": _decode_peer_leave,
    "Welcome": _decode_welcome,
    "Presence": _decode_presence,
    "BinaryAck": _decode_binary_ack,
}


def envelope_to_request(envelope: types_pb2.Envelope) -> sync_pb2.SyncRequest:
    """What a client-sent wrapper asks the session to do, as a typed request.

    Delta -> publish to its own `collection_id`; Heartbeat -> liveness; PeerJoin/PeerLeave
    -> presence JOIN/LEAVE keeping `user_info`; Presence -> presence with its action.
    Presence requests leave `collection_id` empty: the session fills in the connection's
    home collection. The wrapper's `message_id` goes to `SyncRequest.message_id`.
    """
    request = sync_pb2.SyncRequest(
        message_id=envelope.message_id if envelope.HasField("message_id") else ""
    )
    kind = envelope.WhichOneof("message")
    if kind == "delta":
        request.publish.delta.CopyFrom(envelope.delta)
    elif kind == "heartbeat":
        request.heartbeat.CopyFrom(envelope.heartbeat)
    elif kind == "peer_join":
        request.presence.action = types_pb2.PRESENCE_ACTION_JOIN
        if envelope.peer_join.HasField("user_info"):
            request.presence.user_info.CopyFrom(envelope.peer_join.user_info)
    elif kind == "peer_leave":
        request.presence.action = types_pb2.PRESENCE_ACTION_LEAVE
    elif kind == "presence":
        request.presence.action = envelope.presence.action
    else:
        raise UnrepresentableError(f"a client cannot send {kind or 'an empty envelope'}")
    return request


# --- encoding ---------------------------------------------------------------------------


def encode_envelope(envelope: types_pb2.Envelope) -> bytes:
    """Envelope -> wrapper JSON (UTF-8); `UnrepresentableError` if a field has no form."""
    kind = envelope.WhichOneof("message")
    if kind is None:
        raise UnrepresentableError("the envelope holds no message")
    message_id = envelope.message_id if envelope.HasField("message_id") else None
    return wrap(getattr(envelope, kind), envelope.version, message_id)


# SyncResponse kinds that have a wrapper variant (the oneof names match Envelope's).
WRAPPER_KINDS: Final = frozenset(
    {"delta", "heartbeat", "peer_join", "peer_leave", "welcome", "presence", "binary_ack"}
)


def encode_response_wrapper(response: sync_pb2.SyncResponse) -> bytes | None:
    """A server message in wrapper form, or None when it has none (then use shape A).

    None for kinds the wrapper lacks (errors, acks) and for values it cannot hold: a
    Delta without a CRDT type (legacy type-tagged JSON), ids that are not UUIDs, times
    before 1970.
    """
    kind = response.WhichOneof("kind")
    if kind not in WRAPPER_KINDS:
        return None
    try:
        return wrap(getattr(response, kind), CURRENT_VERSION, response.message_id or None)
    except UnrepresentableError:
        return None


def wrap(message: Message, version: int, message_id: str | None) -> bytes:
    """Serialize one typed message inside a wrapper (strict: every value must fit)."""
    name, body = _variant(message)
    return orjson.dumps({"version": version, "message": {name: body}, "message_id": message_id})


def _variant(message: Message) -> tuple[str, JsonObject]:
    """The wrapper variant name and body of a typed message."""
    if isinstance(message, types_pb2.Delta):
        return "Delta", delta_body(message, strict=True)
    if isinstance(message, types_pb2.Heartbeat):
        return "Heartbeat", {
            "replica_id": _uuid_out(message.replica_id),
            "timestamp": systemtime(message.timestamp),
        }
    if isinstance(message, types_pb2.PeerJoin):
        return "PeerJoin", {
            "replica_id": _uuid_out(message.peer_id),
            "user_info": _user_info_body(message.user_info)
            if message.HasField("user_info")
            else None,
        }
    if isinstance(message, types_pb2.PeerLeave):
        return "PeerLeave", {"replica_id": _uuid_out(message.peer_id)}
    if isinstance(message, types_pb2.Welcome):
        return "Welcome", {
            "peer_id": _uuid_out(message.peer_id),
            "timestamp": systemtime(message.timestamp),
            "server_info": _server_info_body(message.server_info)
            if message.HasField("server_info")
            else None,
        }
    if isinstance(message, types_pb2.Presence):
        return "Presence", {
            "peer_id": _uuid_out(message.peer_id),
            "action": ACTION_NAME[message.action],
            "timestamp": systemtime(message.timestamp),
        }
    if isinstance(message, types_pb2.BinaryAck):
        return "BinaryAck", {
            "peer_id": _uuid_out(message.peer_id),
            "size": message.size,
            "timestamp": systemtime(message.timestamp),
        }
    raise UnrepresentableError(f"no wrapper variant for {type(message).__name__}")


def delta_body(delta: types_pb2.Delta, *, strict: bool) -> JsonObject:
    """The wrapper's Delta object for a typed Delta.

    `strict` (wrapper output) refuses what a legacy decoder would reject. Not strict (the
    `data` of a shape A `sync` relaying a non-JSON Delta) writes every value as it is:
    `crdt_type` null when unstated, the replica id verbatim, any time as secs/nanos.
    """
    if strict:
        crdt_name = CRDT_NAME.get(delta.crdt_type)
        if crdt_name is None:
            raise UnrepresentableError("a wrapper Delta needs a CRDT type")
        return {
            "collection_id": delta.collection_id,
            "crdt_type": crdt_name,
            "delta": list(delta.delta),
            "timestamp": systemtime(delta.timestamp),
            "replica_id": _uuid_out(delta.replica_id),
        }
    return {
        "collection_id": delta.collection_id,
        "crdt_type": CRDT_NAME.get(delta.crdt_type),
        "delta": list(delta.delta),
        "timestamp": raw_systemtime(delta.timestamp),
        "replica_id": delta.replica_id,
    }


def _user_info_body(info: types_pb2.UserInfo) -> JsonObject:
    return {
        "user_id": info.user_id,
        "username": info.username if info.HasField("username") else None,
        "display_name": info.display_name if info.HasField("display_name") else None,
        "avatar_url": info.avatar_url if info.HasField("avatar_url") else None,
    }


def _server_info_body(info: types_pb2.ServerInfo) -> JsonObject:
    return {
        "version": info.version,
        "max_connections": info.max_connections if info.HasField("max_connections") else None,
        "features": list(info.features),
    }


def _uuid_out(text: str) -> str:
    canonical = canonical_uuid(text)
    if canonical is None:
        raise UnrepresentableError(f"wrapper ids are UUIDs, got {text[:64]!r}")
    return canonical
