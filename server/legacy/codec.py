"""One legacy frame in, typed messages out, and back: the translator's entry points.

Classification follows README section 6: an object with a `type` key is shape A
(type-tagged); otherwise an object with a `message` or `version` key is shape B (the
wrapper); anything else is `invalid_message`. Everything here is a pure function of its
arguments: no I/O, no clock unless a timestamp is left to default.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from server.legacy.errors import LegacyProtocolError, invalid_message
from server.legacy.fields import JsonObject
from server.legacy.strict_json import MAX_MESSAGE_BYTES, Payload, check_message_size, parse_strict
from server.legacy.tagged import decode_request, decode_response, encode_response, error_object
from server.legacy.wrapper import decode_wrapper, encode_response_wrapper, envelope_to_request
from syncwire.v1 import sync_pb2, types_pb2


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """A decoded client frame: what to do (`request`) and, for a wrapper, what was said.

    `envelope` is set for shape B input and holds the wrapper losslessly (version,
    message_id, the exact variant); a connection that sent one may be answered in wrapper
    form (see `render_for_legacy`).
    """

    request: sync_pb2.SyncRequest
    envelope: types_pb2.Envelope | None = None

    @property
    def is_wrapper(self) -> bool:
        """Whether the frame was a shape B wrapper."""
        return self.envelope is not None

    @property
    def message_id(self) -> str | None:
        """The wrapper's `message_id`, if it had one."""
        if self.envelope is None or not self.envelope.HasField("message_id"):
            return None
        return self.envelope.message_id


def decode_client_message(payload: Payload, *, limit: int = MAX_MESSAGE_BYTES) -> ClientMessage:
    """Decode one text frame a legacy client sent.

    `payload` is the frame's text (`str`) or its raw bytes (`bytes`, e.g. from
    `recv(decode=False)`). Raises `LegacyProtocolError` (answer with `render_error`, keep
    the connection) or its subclass `InvalidUtf8Error` (close with `error.close_code`).
    Shape A requests leave `collection_id` empty for the session's home collection.
    """
    check_message_size(payload, limit)
    obj = _parse_object(payload)
    if "type" in obj:
        return ClientMessage(decode_request(obj, payload))
    if "message" in obj or "version" in obj:
        envelope = decode_wrapper(obj, from_client=True)
        return ClientMessage(envelope_to_request(envelope), envelope)
    raise _neither()


def decode_server_message(payload: Payload) -> sync_pb2.SyncResponse | types_pb2.Envelope:
    """Decode one frame a (legacy or syncwire) server sent to a legacy client.

    Shape A gives a SyncResponse, shape B an Envelope (every variant allowed). No size
    limit: a relayed 1 MiB message is legitimately a little larger.
    """
    obj = _parse_object(payload)
    if "type" in obj:
        return decode_response(obj, payload)
    if "message" in obj or "version" in obj:
        return decode_wrapper(obj, from_client=False)
    raise _neither()


def _parse_object(payload: Payload) -> JsonObject:
    value = parse_strict(payload)
    if not isinstance(value, dict):
        raise invalid_message(f"a message must be a JSON object, got {_json_kind(value)}")
    return value


def _neither() -> LegacyProtocolError:
    return invalid_message("object has no `type` and is not a wrapper (`version`, `message`)")


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def render_for_legacy(response: sync_pb2.SyncResponse, *, wrapper: bool = False) -> bytes | None:
    """The text frame (UTF-8 JSON) to send a legacy client for a typed server message.

    `wrapper=True` for a connection that has itself sent a valid wrapper: a Delta that the
    wrapper can express (a CRDT type, UUID replica id) goes out in wrapper form, as the
    README recommends; everything else, and every message for other connections, goes out
    in shape A. None when the message has no legacy form (send nothing).

    Pure and deterministic, so a fan-out renders each message once per `wrapper` value and
    sends the same bytes to every legacy receiver (send them as a TEXT frame).
    """
    if wrapper and response.WhichOneof("kind") == "delta":
        wrapped = encode_response_wrapper(response)
        if wrapped is not None:
            return wrapped
    return encode_response(response)


def error_response(
    error: LegacyProtocolError, at: Timestamp | None = None
) -> sync_pb2.SyncResponse:
    """The typed form of a rejection: Error with the gRPC code and the legacy reason code."""
    typed = sync_pb2.Error(
        code=error.grpc_code,
        reason_code=error.code,
        message=error.reason,
        timestamp=_now() if at is None else at,
    )
    return sync_pb2.SyncResponse(error=typed, message_id=error.message_id or "")


def render_error(error: LegacyProtocolError, at: Timestamp | None = None) -> bytes:
    """The README section 6 `error` message for a rejection (`at` defaults to now)."""
    timestamp = _now() if at is None else at
    return orjson.dumps(error_object(error.code, error.reason, timestamp, error.message_id))


def _now() -> Timestamp:
    timestamp = Timestamp()
    timestamp.GetCurrentTime()
    return timestamp
