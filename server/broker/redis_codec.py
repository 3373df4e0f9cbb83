"""What travels through Redis: channel messages and history entries.

A channel message is one of
  `D<offset>\\n<epoch>\\n<SyncResponse(delta=...) bytes>`  (written by the publish script)
  `P<SyncResponse bytes>`  (peer_join, peer_leave or presence; written by Python)
The delta bytes are serialized once by the publishing node without offset and epoch
(the script assigns them); each receiving node parses once and fills them in.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncwire.v1 import sync_pb2, types_pb2

from ..clock import now_timestamp

DELTA_TAG = b"D"[0]
PRESENCE_TAG = b"P"[0]


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    """A decoded channel message; `offset` is 0 for presence events."""

    event: sync_pb2.SyncResponse
    offset: int = 0
    epoch: str = ""


def delta_payload(delta: types_pb2.Delta) -> bytes:
    """The stored and broadcast form of an accepted delta (server_time set now)."""
    event = sync_pb2.SyncResponse(delta=delta)
    event.delta.server_time.CopyFrom(now_timestamp())
    return event.SerializeToString()


def presence_message(event: sync_pb2.SyncResponse) -> bytes:
    """The pub/sub payload of a presence event: ``b"P"`` + the serialized SyncResponse."""
    return b"P" + event.SerializeToString()


def decode_message(data: bytes) -> ChannelEvent:
    """Parses a channel message; raises ValueError for anything malformed."""
    if not data:
        raise ValueError("empty channel message")
    tag = data[0]
    if tag == PRESENCE_TAG:
        return ChannelEvent(_parse(data, 1))
    if tag != DELTA_TAG:
        raise ValueError(f"unknown channel message tag {data[:1]!r}")
    end_offset = data.find(b"\n", 1)
    end_epoch = data.find(b"\n", end_offset + 1) if end_offset > 0 else -1
    if end_epoch < 0:
        raise ValueError("truncated delta message")
    offset = int(data[1:end_offset])
    epoch = data[end_offset + 1 : end_epoch].decode("ascii")
    event = _parse(data, end_epoch + 1)
    _place(event, offset, epoch)
    return ChannelEvent(event, offset, epoch)


def history_event(entry_id: bytes, fields: list[bytes], epoch: str) -> sync_pb2.SyncResponse:
    """A history stream entry ([id, [b"p", payload]]) as a SyncResponse(delta=...)."""
    payload = dict(zip(fields[::2], fields[1::2], strict=True))[b"p"]
    event = sync_pb2.SyncResponse.FromString(payload)
    _place(event, entry_offset(entry_id), epoch)
    return event


def entry_offset(entry_id: bytes) -> int:
    """The offset part of a history entry id `<offset>-<ms>`."""
    return int(entry_id.partition(b"-")[0])


def _parse(data: bytes, start: int) -> sync_pb2.SyncResponse:
    try:
        return sync_pb2.SyncResponse.FromString(data[start:])
    except Exception as exc:  # protobuf raises DecodeError (and others for odd input)
        raise ValueError(f"undecodable event: {exc}") from None


def _place(event: sync_pb2.SyncResponse, offset: int, epoch: str) -> None:
    if event.WhichOneof("kind") != "delta":
        raise ValueError("delta message without a delta")
    event.delta.offset = offset
    event.delta.epoch = epoch
