"""Sans-I/O call multiplexers: the per-connection state machines both ends drive.

``receive(message)`` takes one WebSocket message and returns events; the ``send_*``
methods validate call state and queue encoded records in ``write_queue``; the driver moves
``data_to_send()`` batches to its socket (or in-memory pipe). No I/O, no asyncio.

Per call, the client sends ``start``, then messages, then ``half_close`` (or ``cancel``
at any time); the server sends ``headers`` at most once before any message, then
messages, then exactly one ``end``. A frame that breaks these rules fails only its call:
the server answers with an end (INVALID_ARGUMENT), the client cancels and fails the call
locally (INTERNAL). A frame for no known call is dropped and reported to the peer with a
ProtocolError on call 0. Frames for calls that already finished are dropped silently:
they are the normal race between an end and a late client frame (or a cancel and a late
server frame).

What one received WebSocket message can cost is bounded: all the frames of a message
that belong to no call are answered by at most one ProtocolError (carrying their count
in ``discarded_frames``) and reported as one FrameDiscarded event; and once more than
``discard_limit`` frames were discarded or refused within ``discard_window`` seconds,
the rest of the message is ignored, ``violation`` says why, and the driver closes the
connection (1008).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc

from syncwire.ws.v1 import frame_pb2
from wire.codec import (
    FrameDecodeError,
    MessageRecordCache,
    decode_batch,
    encode_message_record,
    encode_record,
)
from wire.deadline import DeadlineError, duration_to_timeout, timeout_to_duration
from wire.events import (
    CallCancelled,
    CallEnded,
    CallFailed,
    CallStarted,
    Event,
    FrameDiscarded,
    HalfClosed,
    HeadersReceived,
    MessageReceived,
    PeerProtocolError,
    PongReceived,
    SettingsReceived,
    WindowOpened,
)
from wire.metadata import (
    MetadataError,
    MetadataPairs,
    decode_invocation_metadata,
    decode_metadata,
    encode_metadata,
)
from wire.status import code_to_number, number_to_code
from wire.write_queue import BATCH_BYTES, WriteQueue

MAX_CALL_ID = 0xFFFFFFFF
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
# Flow control, per call and direction: a message costs its payload length plus
# MESSAGE_OVERHEAD; it may be sent while the window is positive (so one message larger
# than the window still goes); the receiver grants consumed costs back in batches of at
# least half the initial window.
INITIAL_WINDOW = 256 * 1024
MESSAGE_OVERHEAD = 32
# Discarded frames (belonging to no call) and refused starts a connection may send in
# DISCARD_WINDOW_SECONDS before it is closed with 1008 (policy violation).
DISCARD_LIMIT = 100
DISCARD_WINDOW_SECONDS = 10.0


@dataclass(slots=True)
class _CallState:
    """Per-call flow-control windows, shared by both ends."""

    send_window: int = INITIAL_WINDOW
    recv_window: int = INITIAL_WINDOW
    ungranted: int = 0  # consumed by the application, not yet granted back


CallStateT = TypeVar("CallStateT", bound=_CallState)


class CallStateError(RuntimeError):
    """Local misuse: sending on a call that is not open, or out of order."""


class MessageTooLargeError(ValueError):
    """A message to send exceeds the peer's announced limit."""


class CallIdsExhaustedError(RuntimeError):
    """The connection has used every call id; open a new connection."""


class Multiplexer(Generic[CallStateT]):
    """What both ends share: open calls, decoding, call-0 frames, size limits, write queue."""

    def __init__(
        self,
        *,
        max_receive_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
        max_send_bytes: int | None = None,
        batch_bytes: int = BATCH_BYTES,
        discard_limit: int = DISCARD_LIMIT,
        discard_window: float = DISCARD_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.write_queue = WriteQueue(batch_bytes)
        self._batch_bytes = batch_bytes
        self._ping_nonce: int | None = None  # the last Ping of the message being read
        self.pongs_received = 0  # Pongs the peer sent (answers to send_ping), for observers
        self.max_receive_bytes = max_receive_bytes
        self.max_send_bytes = max_send_bytes
        self._events: list[Event] = []
        self._calls: dict[int, CallStateT] = {}
        self._discard_limit = discard_limit
        self._discard_window = discard_window
        self._clock = clock
        # (time, count) per message with discards; created by the first one (memory: most
        # connections never discard anything).
        self._recent_discards: deque[tuple[float, int]] | None = None
        self._recent_total = 0
        self.violation: str | None = None  # set once the discard budget is exceeded
        self._message_discards = 0  # frames of the current message answered by nothing
        self._message_refusals = 0  # frames of the current message answered by an end
        self._first_discard = ""  # what was wrong with the first discarded frame
        self._first_problem = ""  # ... with the first discarded or refused frame

    def is_open(self, call_id: int) -> bool:
        """Whether the call is still running (not ended, cancelled or failed)."""
        return call_id in self._calls

    @property
    def open_calls(self) -> list[int]:
        """Ids of the calls still running."""
        return list(self._calls)

    def can_send(self, call_id: int) -> bool:
        """Whether the call's flow-control window lets a message go now (True for calls
        that are not open: sending then raises CallStateError)."""
        call = self._calls.get(call_id)
        return call is None or call.send_window > 0

    def consumed(self, call_id: int, payload_bytes: int) -> None:
        """The application took one received message of the call: grant its cost back to
        the peer once enough has accumulated."""
        call = self._calls.get(call_id)
        if call is None:
            return
        call.ungranted += payload_bytes + MESSAGE_OVERHEAD
        if call.ungranted >= INITIAL_WINDOW // 2:
            update = frame_pb2.CallWindowUpdate(bytes=call.ungranted)
            self.write_queue.push(encode_record(frame_pb2.Frame(call_id=call_id, window_update=update)))
            call.recv_window += call.ungranted
            call.ungranted = 0

    def send_message(self, call_id: int, payload: bytes) -> None:
        """Queues one call message; raises CallStateError when the call is not open for
        sending, MessageTooLargeError over the peer's limit."""
        raise NotImplementedError

    def _queue_message(self, call_id: int, call: CallStateT, payload: bytes) -> None:
        if call.send_window <= 0:
            raise CallStateError(f"call {call_id}: flow-control window closed")
        self._check_send_size(payload)
        call.send_window -= len(payload) + MESSAGE_OVERHEAD
        self.write_queue.push(encode_message_record(call_id, payload))

    def _accept_message(
        self, call_id: int, call: CallStateT, payload: bytes, violation: grpc.StatusCode
    ) -> bool:
        """Checks a received message against the size limit and the call's window."""
        if call.recv_window <= 0:
            self._fail(
                call_id, violation, f"call {call_id}: message beyond the flow-control window"
            )
            return False
        call.recv_window -= len(payload) + MESSAGE_OVERHEAD
        return self._payload_fits(call_id, payload)

    def _on_window_update(
        self, call_id: int, call: CallStateT, update: frame_pb2.CallWindowUpdate
    ) -> None:
        was_closed = call.send_window <= 0
        call.send_window += update.bytes
        if was_closed and call.send_window > 0:
            self._events.append(WindowOpened(call_id))

    def data_to_send(self) -> bytes | None:
        """The next WebSocket message to send (a batch of queued frames), if any."""
        return self.write_queue.take_batch()

    def receive(self, message: bytes | str) -> list[Event]:
        """Applies one received WebSocket message; returns what happened, in order.
        Ignored once ``violation`` is set (the connection is being closed)."""
        if self.violation is not None:
            return []
        now = self._clock()
        recent = self._recent_discards
        while recent and recent[0][0] <= now - self._discard_window:
            self._recent_total -= recent.popleft()[1]
        self._message_discards = self._message_refusals = 0
        if isinstance(message, str):
            self._discard("text WebSocket message ignored: frames travel in binary messages")
        else:
            for item in decode_batch(message):
                if isinstance(item, FrameDecodeError):
                    self._on_undecodable(item)
                elif item.call_id == 0:
                    self._on_connection_frame(item)
                else:
                    self._on_call_frame(item)
                if self.violation is not None:
                    break  # the rest of the message is not worth decoding
        self._report_discards(now)
        self._answer_ping()
        events, self._events = self._events, []
        return events

    def _report_discards(self, now: float) -> None:
        """One ProtocolError and one FrameDiscarded event for the whole message."""
        discarded, refused = self._message_discards, self._message_refusals
        if not discarded and not refused:
            return
        if discarded:
            error = frame_pb2.ProtocolError(
                code=code_to_number(grpc.StatusCode.INVALID_ARGUMENT),
                details=self._first_discard,
                discarded_frames=discarded,
            )
            self.write_queue.push(encode_record(frame_pb2.Frame(call_id=0, protocol_error=error)))
        if self._recent_discards is None:
            self._recent_discards = deque()
        self._recent_discards.append((now, discarded + refused))
        self._events.append(FrameDiscarded(self._first_problem, discarded + refused))

    def _count_discard(self, details: str) -> None:
        """Counts one frame of this message that belongs to no call against the budget."""
        if not self._message_discards and not self._message_refusals:
            self._first_problem = details
        self._recent_total += 1
        if self._recent_total > self._discard_limit and self.violation is None:
            self.violation = (
                f"too many invalid frames: more than {self._discard_limit} in "
                f"{self._discard_window:g} s"
            )

    def _on_undecodable(self, error: FrameDecodeError) -> None:
        raise NotImplementedError

    def _on_call_frame(self, frame: frame_pb2.Frame) -> None:
        raise NotImplementedError

    def _fail(self, call_id: int, code: grpc.StatusCode, details: str) -> None:
        raise NotImplementedError

    def send_ping(self, nonce: int) -> None:
        """Queues an application-level Ping on call 0; the peer answers with a Pong
        carrying ``nonce`` (a uint64)."""
        ping = frame_pb2.Ping(nonce=nonce)
        self.write_queue.push(encode_record(frame_pb2.Frame(call_id=0, ping=ping)))

    def _on_connection_frame(self, frame: frame_pb2.Frame) -> None:
        kind = frame.WhichOneof("kind")
        if kind == "ping":
            self._ping_nonce = frame.ping.nonce
        elif kind == "pong":
            self.pongs_received += 1
            self._events.append(PongReceived(frame.pong.nonce))
        elif kind == "protocol_error":
            error = frame.protocol_error
            self._events.append(PeerProtocolError(number_to_code(error.code), error.details))
        elif kind == "settings":
            self._on_settings(frame.settings)
        elif kind is not None:
            self._discard(f"call 0 carries no {kind!r} frames")
        # else: a call-0 frame of a kind this version does not know (or none): ignored, so
        # that later versions can add connection-level frames.

    def _on_settings(self, settings: frame_pb2.ConnectionSettings) -> None:
        self._discard("frame kind 'settings' is sent by servers only")

    def _answer_ping(self) -> None:
        """One Pong per received WebSocket message, answering its last Ping; none while
        a full batch waits to be written (a peer that does not read needs no more)."""
        nonce, self._ping_nonce = self._ping_nonce, None
        if nonce is not None and self.write_queue.pending_bytes <= self._batch_bytes:
            pong = frame_pb2.Pong(nonce=nonce)
            self.write_queue.push(encode_record(frame_pb2.Frame(call_id=0, pong=pong)))

    def _discard(self, details: str) -> None:
        """Drops an unattributable frame; the peer hears of it in the message's one
        ProtocolError."""
        self._count_discard(details)
        if not self._message_discards:
            self._first_discard = details
        self._message_discards += 1

    def _payload_fits(self, call_id: int, payload: bytes) -> bool:
        limit = self.max_receive_bytes
        if limit is not None and len(payload) > limit:
            self._fail(
                call_id,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Received message larger than max ({len(payload)} vs. {limit})",
            )
            return False
        return True

    def _check_send_size(self, payload: bytes) -> None:
        limit = self.max_send_bytes
        if limit is not None and len(payload) > limit:
            raise MessageTooLargeError(f"Sent message larger than max ({len(payload)} vs. {limit})")


@dataclass(slots=True)
class _ServerCall(_CallState):
    half_closed: bool = False
    responded: bool = False  # headers or a message went out


class ServerMultiplexer(Multiplexer[_ServerCall]):
    """The server end of one connection."""

    _last_call_id = 0  # highest call id started so far

    def send_settings(self, settings: frame_pb2.ConnectionSettings) -> None:
        """Queues the connection's ConnectionSettings on call 0 (the server's first
        frame)."""
        frame = frame_pb2.Frame(call_id=0, settings=settings)
        self.write_queue.push(encode_record(frame))

    def send_headers(self, call_id: int, metadata: MetadataPairs) -> None:
        """Queues the call's initial metadata; raises MetadataError for invalid entries."""
        call = self._open(call_id)
        if call.responded:
            raise CallStateError(f"call {call_id}: headers must precede messages, once")
        entries = encode_metadata(metadata)
        call.responded = True
        headers = frame_pb2.CallHeaders(metadata=entries)
        self.write_queue.push(encode_record(frame_pb2.Frame(call_id=call_id, headers=headers)))

    def send_message(self, call_id: int, payload: bytes) -> None:
        """Queues one response message; raises MessageTooLargeError over the peer's limit."""
        call = self._open(call_id)
        self._queue_message(call_id, call, payload)
        call.responded = True

    def try_send_message(
        self, call_id: int, payload: bytes, records: MessageRecordCache | None
    ) -> bool:
        """``send_message`` if the call is open and its window lets the message go now
        (False, nothing queued, otherwise); the record comes from ``records`` when given,
        so a payload broadcast to many calls is encoded once per call id. Raises
        MessageTooLargeError over the peer's limit."""
        call = self._calls.get(call_id)
        if call is None or call.send_window <= 0:
            return False
        limit = self.max_send_bytes
        if limit is not None and len(payload) > limit:
            self._check_send_size(payload)  # raises
        call.send_window -= len(payload) + MESSAGE_OVERHEAD
        call.responded = True
        record = (
            encode_message_record(call_id, payload)
            if records is None
            else records.record(call_id, payload)
        )
        self.write_queue.push(record)
        return True

    def end(
        self,
        call_id: int,
        code: grpc.StatusCode,
        details: str = "",
        trailers: MetadataPairs | None = None,
    ) -> None:
        """Ends the call with its status; invalid trailers turn the status into INTERNAL.
        Raises ValueError (the call stays open) when ``details`` cannot be encoded as
        UTF-8, so the caller can end it with other details."""
        if call_id not in self._calls:
            raise CallStateError(f"call {call_id} is not open")
        try:
            entries = encode_metadata(trailers)
        except MetadataError as exc:
            code, details, entries = grpc.StatusCode.INTERNAL, f"invalid trailers: {exc}", []
        record = self._end_record(call_id, code, details, entries)
        del self._calls[call_id]
        self.write_queue.push(record)

    def _open(self, call_id: int) -> _ServerCall:
        call = self._calls.get(call_id)
        if call is None:
            raise CallStateError(f"call {call_id} is not open")
        return call

    @staticmethod
    def _end_record(
        call_id: int,
        code: grpc.StatusCode,
        details: str,
        entries: list[frame_pb2.MetadataEntry] | None = None,
    ) -> bytes:
        end = frame_pb2.CallEnd(code=code_to_number(code), details=details, trailers=entries)
        return encode_record(frame_pb2.Frame(call_id=call_id, end=end))

    def _queue_end(
        self,
        call_id: int,
        code: grpc.StatusCode,
        details: str,
        entries: list[frame_pb2.MetadataEntry] | None = None,
    ) -> None:
        self.write_queue.push(self._end_record(call_id, code, details, entries))

    def _fail(self, call_id: int, code: grpc.StatusCode, details: str) -> None:
        del self._calls[call_id]
        self._queue_end(call_id, code, details)
        self._events.append(CallFailed(call_id, code, details))

    def _refuse_start(self, call_id: int, details: str) -> None:
        """Ends a call that never opened: the client is waiting for its end."""
        self._queue_end(call_id, grpc.StatusCode.INVALID_ARGUMENT, details)
        self._count_discard(details)
        self._message_refusals += 1

    def _on_undecodable(self, error: FrameDecodeError) -> None:
        call_id = error.call_id
        if call_id is not None and call_id in self._calls:
            self._fail(call_id, grpc.StatusCode.INVALID_ARGUMENT, f"call {call_id}: {error.reason}")
        elif call_id is not None and call_id % 2 == 1 and call_id > self._last_call_id:
            self._last_call_id = call_id  # most likely its start: end it so the client knows
            self._refuse_start(call_id, f"call {call_id}: {error.reason}")
        else:
            self._discard(error.reason if call_id is None else f"call {call_id}: {error.reason}")

    def _on_start(self, call_id: int, start: frame_pb2.CallStart) -> None:
        if call_id in self._calls:
            self._fail(call_id, grpc.StatusCode.INVALID_ARGUMENT, f"call {call_id} started twice")
            return
        if call_id % 2 == 0:
            self._refuse_start(call_id, f"call id {call_id} is even; client call ids are odd")
            return
        if call_id <= self._last_call_id:
            self._refuse_start(
                call_id,
                f"call id {call_id} is not greater than the previous one ({self._last_call_id})",
            )
            return
        self._last_call_id = call_id
        try:
            if not start.method.startswith("/"):
                raise ValueError(
                    f"method {start.method!r} is not a path like /package.Service/Method"
                )
            metadata = decode_invocation_metadata(start.metadata)
            timeout = duration_to_timeout(start.timeout) if start.HasField("timeout") else None
        except (ValueError, MetadataError, DeadlineError) as exc:
            self._refuse_start(call_id, f"call {call_id}: {exc}")
            return
        self._calls[call_id] = _ServerCall()
        self._events.append(CallStarted(call_id, start.method, metadata, timeout))

    def _on_call_frame(self, frame: frame_pb2.Frame) -> None:
        call_id = frame.call_id
        kind = frame.WhichOneof("kind")
        if kind == "start":
            self._on_start(call_id, frame.start)
            return
        call = self._calls.get(call_id)
        if call is None:
            if call_id % 2 == 1 and call_id <= self._last_call_id:
                return  # late frame for a finished call
            self._discard(f"{kind or 'empty'} frame for call {call_id}, which was never started")
            return
        if kind == "message":
            if call.half_closed:
                self._fail(
                    call_id,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"call {call_id}: message after half-close",
                )
            elif self._accept_message(
                call_id, call, frame.message.payload, grpc.StatusCode.INVALID_ARGUMENT
            ):
                self._events.append(MessageReceived(call_id, frame.message.payload))
        elif kind == "window_update":
            self._on_window_update(call_id, call, frame.window_update)
        elif kind == "half_close":
            if call.half_closed:
                self._fail(
                    call_id, grpc.StatusCode.INVALID_ARGUMENT, f"call {call_id}: second half-close"
                )
            else:
                call.half_closed = True
                self._events.append(HalfClosed(call_id))
        elif kind == "cancel":
            del self._calls[call_id]
            self._events.append(CallCancelled(call_id))
        else:
            what = f"frame kind {kind!r} is not sent by clients" if kind else "frame has no kind"
            self._fail(call_id, grpc.StatusCode.INVALID_ARGUMENT, f"call {call_id}: {what}")


@dataclass(slots=True)
class _ClientCall(_CallState):
    half_closed: bool = False
    answered: bool = False  # headers or a message came in


class ClientMultiplexer(Multiplexer[_ClientCall]):
    """The client end of one connection."""

    _next_call_id = 1

    def _on_settings(self, settings: frame_pb2.ConnectionSettings) -> None:
        """The server's limits: its max_message_bytes bounds what this end sends from now
        on (the lower of it and the local limit)."""
        announced = settings.max_message_bytes
        if announced:
            limit = self.max_send_bytes
            self.max_send_bytes = announced if limit is None else min(limit, announced)
        self._events.append(SettingsReceived(settings))

    @property
    def exhausted(self) -> bool:
        """Whether every call id of this connection has been used."""
        return self._next_call_id > MAX_CALL_ID

    def start(self, method: str, metadata: MetadataPairs | None, timeout: float | None) -> int:
        """Queues a call's start and returns its id; raises MetadataError for bad metadata
        and CallIdsExhaustedError when this connection has no id left."""
        entries = encode_metadata(metadata)
        call_id = self._next_call_id
        if self.exhausted:
            raise CallIdsExhaustedError("no call id left on this connection")
        self._next_call_id += 2
        start = frame_pb2.CallStart(method=method, metadata=entries)
        if timeout is not None:
            start.timeout.CopyFrom(timeout_to_duration(timeout))
        self.write_queue.push(encode_record(frame_pb2.Frame(call_id=call_id, start=start)))
        self._calls[call_id] = _ClientCall()
        return call_id

    def send_message(self, call_id: int, payload: bytes) -> None:
        """Queues one request message; raises MessageTooLargeError over the server's limit."""
        self._queue_message(call_id, self._sending(call_id), payload)

    def half_close(self, call_id: int) -> None:
        """Queues the end of the call's requests."""
        self._sending(call_id).half_closed = True
        frame = frame_pb2.Frame(call_id=call_id, half_close=frame_pb2.CallHalfClose())
        self.write_queue.push(encode_record(frame))

    def cancel(self, call_id: int) -> None:
        """Abandons the call (the server sends no end); no-op once the call is over."""
        if self._calls.pop(call_id, None) is not None:
            frame = frame_pb2.Frame(call_id=call_id, cancel=frame_pb2.CallCancel())
            self.write_queue.push(encode_record(frame))

    def _sending(self, call_id: int) -> _ClientCall:
        call = self._calls.get(call_id)
        if call is None:
            raise CallStateError(f"call {call_id} is not open")
        if call.half_closed:
            raise CallStateError(f"call {call_id} is half-closed")
        return call

    def _fail(self, call_id: int, code: grpc.StatusCode, details: str) -> None:
        self.cancel(call_id)
        self._events.append(CallFailed(call_id, code, details))

    def _on_undecodable(self, error: FrameDecodeError) -> None:
        call_id = error.call_id
        if call_id is not None and call_id in self._calls:
            self._fail(call_id, grpc.StatusCode.INTERNAL, f"call {call_id}: {error.reason}")
        else:
            self._discard(error.reason if call_id is None else f"call {call_id}: {error.reason}")

    def _on_call_frame(self, frame: frame_pb2.Frame) -> None:
        call_id = frame.call_id
        kind = frame.WhichOneof("kind")
        call = self._calls.get(call_id)
        if call is None:
            if call_id % 2 == 1 and call_id < self._next_call_id:
                return  # late frame for a call this client already finished
            self._discard(f"{kind or 'empty'} frame for call {call_id}, which was never started")
            return
        internal = grpc.StatusCode.INTERNAL
        if kind == "headers":
            if call.answered:
                self._fail(call_id, internal, f"call {call_id}: headers after headers or messages")
                return
            try:
                metadata = decode_metadata(frame.headers.metadata)
            except MetadataError as exc:
                self._fail(call_id, internal, f"call {call_id}: {exc}")
                return
            call.answered = True
            self._events.append(HeadersReceived(call_id, metadata))
        elif kind == "message":
            if self._accept_message(call_id, call, frame.message.payload, internal):
                call.answered = True
                self._events.append(MessageReceived(call_id, frame.message.payload))
        elif kind == "window_update":
            self._on_window_update(call_id, call, frame.window_update)
        elif kind == "end":
            del self._calls[call_id]
            end = frame.end
            code, details = number_to_code(end.code), end.details
            try:
                trailers = decode_metadata(end.trailers)
            except MetadataError as exc:
                code, details, trailers = internal, f"invalid trailers: {exc}", decode_metadata([])
            self._events.append(CallEnded(call_id, code, details, trailers))
        else:
            what = f"frame kind {kind!r} is not sent by servers" if kind else "frame has no kind"
            self._fail(call_id, internal, f"call {call_id}: {what}")
