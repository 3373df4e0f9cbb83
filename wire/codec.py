"""FrameBatch encoding: one WebSocket message = concatenated length-delimited records.

A FrameBatch's wire encoding is a run of ``0x0A <varint length> <Frame bytes>`` records
(field 1, wire type 2), so batching is plain byte concatenation of encoded records and
decoding can go record by record: one malformed frame fails only its own call.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError

from syncwire.ws.v1 import frame_pb2

_RECORD_TAG = b"\x0a"  # FrameBatch.frames: field 1, length-delimited
_CALL_ID_TAG = b"\x08"  # Frame.call_id: field 1, varint
_MESSAGE_TAG = b"\x22"  # Frame.message: field 4, length-delimited
_PAYLOAD_TAG = b"\x0a"  # CallMessage.payload: field 1, length-delimited
_MAX_UINT32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class FrameDecodeError:
    """A record that could not be decoded; ``call_id`` is set when it could be recovered."""

    reason: str
    call_id: int | None = None


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def encode_varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position); raises IndexError/ValueError on truncated or overlong input."""
    result = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise ValueError("varint too long")


def _skip_field(data: bytes, pos: int, wire_type: int) -> int:
    """Position after a field's value; raises ValueError/IndexError when it is broken."""
    if wire_type == 0:
        return _read_varint(data, pos)[1]
    if wire_type == 1:
        end = pos + 8
    elif wire_type == 2:
        length, pos = _read_varint(data, pos)
        end = pos + length
    elif wire_type == 5:
        end = pos + 4
    else:
        raise ValueError(f"unsupported wire type {wire_type}")
    if end > len(data):
        raise ValueError("field runs past the end of the message")
    return end


def encode_record(frame: frame_pb2.Frame) -> bytes:
    """One frame as a FrameBatch record, ready to be concatenated with others."""
    body = frame.SerializeToString()
    return b"".join((_RECORD_TAG, encode_varint(len(body)), body))


def encode_message_record(call_id: int, payload: bytes) -> bytes:
    """A CallMessage record built directly from the payload (the hot path: no Frame
    object, one join); byte-identical to ``encode_record``."""
    if payload:
        size = encode_varint(len(payload))
        inner_len = 1 + len(size) + len(payload)
        message = b"".join((_MESSAGE_TAG, encode_varint(inner_len), _PAYLOAD_TAG, size))
    else:
        inner_len = 0
        message = _MESSAGE_TAG + b"\x00"
    head = _CALL_ID_TAG + encode_varint(call_id) if call_id else b""
    body_len = len(head) + len(message) + (inner_len and len(payload))
    return b"".join((_RECORD_TAG, encode_varint(body_len), head, message, payload))


class MessageRecordCache:
    """``encode_message_record`` once per (payload object, call id): a broadcast hands
    the same payload bytes to many calls, and most subscribers' streams have the same
    call id, so most of them share one record. Holds at most ``size`` records of at
    most ``max_payload_bytes`` each (larger payloads are encoded afresh)."""

    __slots__ = ("_records", "max_payload_bytes", "size")

    def __init__(self, size: int = 256, max_payload_bytes: int = 16 * 1024) -> None:
        self.size = size
        self.max_payload_bytes = max_payload_bytes
        self._records: dict[tuple[int, int], tuple[bytes, bytes]] = {}

    def record(self, call_id: int, payload: bytes) -> bytes:
        """``encode_message_record(call_id, payload)``, reused for the same object."""
        key = (id(payload), call_id)
        cached = self._records.get(key)
        if cached is not None and cached[0] is payload:
            return cached[1]
        record = encode_message_record(call_id, payload)
        if len(payload) <= self.max_payload_bytes:
            if len(self._records) >= self.size:
                self._records.clear()
            self._records[key] = (payload, record)
        return record


def recover_call_id(body: bytes) -> int | None:
    """The call id of a Frame that does not decode, read from the fields before the damage."""
    call_id: int | None = None
    pos = 0
    try:
        while pos < len(body):
            key, pos = _read_varint(body, pos)
            field, wire_type = key >> 3, key & 7
            if field == 1 and wire_type == 0:
                value, pos = _read_varint(body, pos)
                call_id = value if value <= _MAX_UINT32 else None
            else:
                pos = _skip_field(body, pos, wire_type)
    except (IndexError, ValueError):
        pass
    return call_id


def _decode_slowly(data: bytes) -> list[frame_pb2.Frame | FrameDecodeError]:
    """Record-by-record decoding, used only when the whole batch failed to parse."""
    items: list[frame_pb2.Frame | FrameDecodeError] = []
    pos = 0
    while pos < len(data):
        try:
            key, pos = _read_varint(data, pos)
            wire_type = key & 7
            if key >> 3 != 1 or wire_type != 2:
                pos = _skip_field(data, pos, wire_type)  # unknown FrameBatch field
                continue
            length, pos = _read_varint(data, pos)
        except (IndexError, ValueError) as exc:
            items.append(FrameDecodeError(f"undecodable batch record at byte {pos}: {exc}"))
            return items
        body = data[pos : pos + length]
        if len(body) < length:
            items.append(FrameDecodeError(f"record at byte {pos} is truncated"))
            return items
        pos += length
        try:
            items.append(frame_pb2.Frame.FromString(body))
        except DecodeError as exc:
            items.append(FrameDecodeError(f"malformed frame: {exc}", recover_call_id(body)))
    return items


def decode_batch(data: bytes) -> list[frame_pb2.Frame | FrameDecodeError]:
    """Frames of one WebSocket message, in order. Never raises: each record that does not
    decode becomes a FrameDecodeError in its place; a broken record structure ends the list
    with one error, since nothing after it can be delimited."""
    try:
        return list(frame_pb2.FrameBatch.FromString(data).frames)
    except DecodeError:
        return _decode_slowly(data)
