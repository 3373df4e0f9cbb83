"""What a multiplexer reports after reading a WebSocket message (sans-I/O events)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import grpc.aio

from syncwire.ws.v1 import frame_pb2
from wire.metadata import InvocationMetadata


@dataclass(frozen=True, slots=True)
class CallStarted:
    """Server side: the client opened a call."""

    call_id: int
    method: str
    metadata: InvocationMetadata
    timeout: float | None


@dataclass(frozen=True, slots=True)
class HeadersReceived:
    """Client side: the server sent the call's initial metadata."""

    call_id: int
    metadata: grpc.aio.Metadata


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """Either side: one serialized message of a call."""

    call_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class WindowOpened:
    """Either side: the call's flow-control window reopened; blocked writers may go on."""

    call_id: int


@dataclass(frozen=True, slots=True)
class HalfClosed:
    """Server side: the client will send no more messages on the call."""

    call_id: int


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """Server side: the client abandoned the call; no end is to be sent."""

    call_id: int


@dataclass(frozen=True, slots=True)
class CallEnded:
    """Client side: the server ended the call with this status."""

    call_id: int
    code: grpc.StatusCode
    details: str
    trailers: grpc.aio.Metadata


@dataclass(frozen=True, slots=True)
class CallFailed:
    """Either side: the multiplexer itself ended the call because of a bad frame or a
    limit. The peer has already been told (server: an end frame; client: a cancel frame);
    the driver only has to finish the call locally with this status."""

    call_id: int
    code: grpc.StatusCode
    details: str


@dataclass(frozen=True, slots=True)
class FrameDiscarded:
    """Either side: ``count`` frames of one received WebSocket message belonged to no open
    call and were dropped (the peer got one ProtocolError for them) or, for refused
    starts, answered with an end; ``details`` says what was wrong with the first.
    Informational (log it, throttled); no call is affected."""

    details: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class PeerProtocolError:
    """Either side: the peer reported that it discarded one of our frames."""

    code: grpc.StatusCode
    details: str


@dataclass(frozen=True, slots=True)
class SettingsReceived:
    """Client side: the server's ConnectionSettings (its first frame, call 0); the
    multiplexer already applied ``max_message_bytes`` to what it sends."""

    settings: frame_pb2.ConnectionSettings


@dataclass(frozen=True, slots=True)
class PongReceived:
    """Either side: the peer answered one of our application-level Pings."""

    nonce: int


Event = (
    CallStarted
    | HeadersReceived
    | MessageReceived
    | HalfClosed
    | CallCancelled
    | CallEnded
    | CallFailed
    | FrameDiscarded
    | PeerProtocolError
    | PongReceived
    | SettingsReceived
    | WindowOpened
)
