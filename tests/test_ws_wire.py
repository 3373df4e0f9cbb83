"""The sans-I/O framing core, without sockets: codec round trips and call state machines."""

from __future__ import annotations

import grpc
from hypothesis import given
from hypothesis import strategies as st

from syncwire.ws.v1 import frame_pb2
from wire.codec import (
    FrameDecodeError,
    decode_batch,
    encode_message_record,
    encode_record,
    encode_varint,
)
from wire.deadline import duration_to_timeout, timeout_to_duration
from wire.events import (
    CallCancelled,
    CallEnded,
    CallFailed,
    CallStarted,
    FrameDiscarded,
    HalfClosed,
    HeadersReceived,
    MessageReceived,
    PeerProtocolError,
    WindowOpened,
)
from wire.metadata import (
    MetadataError,
    decode_invocation_metadata,
    decode_metadata,
    encode_metadata,
)
from wire.mux import INITIAL_WINDOW, ClientMultiplexer, MessageTooLargeError, ServerMultiplexer
from wire.status import code_to_number, number_to_code
from wire.write_queue import WriteQueue

_keys = st.from_regex(r"[a-z][a-z0-9_.\-]{0,12}", fullmatch=True).filter(
    lambda k: not k.endswith("-bin")
)
_entries = st.lists(
    st.one_of(
        st.builds(frame_pb2.MetadataEntry, key=_keys, value=st.binary(max_size=20)),
        st.builds(
            frame_pb2.MetadataEntry,
            key=_keys.map(lambda k: k + "-bin"),
            value=st.binary(max_size=20),
        ),
    ),
    max_size=3,
)
_call_ids = st.integers(min_value=0, max_value=0xFFFFFFFF)
_kinds = st.one_of(
    st.builds(
        lambda method, md, secs: frame_pb2.Frame(
            start=frame_pb2.CallStart(method=method, metadata=md, timeout=secs)
        ),
        st.text(max_size=30),
        _entries,
        st.none() | st.builds(timeout_to_duration, st.floats(0, 1e6)),
    ),
    st.builds(lambda md: frame_pb2.Frame(headers=frame_pb2.CallHeaders(metadata=md)), _entries),
    st.builds(lambda p: frame_pb2.Frame(message=frame_pb2.CallMessage(payload=p)), st.binary()),
    st.just(frame_pb2.Frame(half_close=frame_pb2.CallHalfClose())),
    st.just(frame_pb2.Frame(cancel=frame_pb2.CallCancel())),
    st.builds(
        lambda code, details, md: frame_pb2.Frame(
            end=frame_pb2.CallEnd(code=code, details=details, trailers=md)
        ),
        st.integers(0, 16),
        st.text(max_size=30),
        _entries,
    ),
    st.builds(
        lambda details: frame_pb2.Frame(
            protocol_error=frame_pb2.ProtocolError(code=3, details=details)
        ),
        st.text(max_size=30),
    ),
)


def _with_id(frame: frame_pb2.Frame, call_id: int) -> frame_pb2.Frame:
    frame.call_id = call_id
    return frame


_frames = st.builds(_with_id, _kinds, _call_ids)


@given(st.lists(_frames, max_size=8))
def test_batches_of_random_frames_round_trip(frames: list[frame_pb2.Frame]) -> None:
    data = b"".join(encode_record(frame) for frame in frames)
    assert data == frame_pb2.FrameBatch(frames=frames).SerializeToString()
    assert decode_batch(data) == frames


@given(_call_ids, st.binary())
def test_message_fast_path_is_byte_identical(call_id: int, payload: bytes) -> None:
    frame = frame_pb2.Frame(call_id=call_id, message=frame_pb2.CallMessage(payload=payload))
    assert encode_message_record(call_id, payload) == encode_record(frame)


@given(st.binary(max_size=300))
def test_random_bytes_only_ever_yield_frames_or_typed_errors(data: bytes) -> None:
    for item in decode_batch(data):
        assert isinstance(item, frame_pb2.Frame | FrameDecodeError)


def _corrupt_start(call_id: int) -> bytes:
    """A record whose Frame has a valid call id and a method that is not UTF-8."""
    body = frame_pb2.Frame(
        call_id=call_id, start=frame_pb2.CallStart(method="/x")
    ).SerializeToString()
    body = body.replace(b"/x", b"/\xff")
    return b"\x0a" + encode_varint(len(body)) + body


def test_one_malformed_frame_keeps_its_neighbours_and_its_call_id() -> None:
    data = encode_message_record(1, b"a") + _corrupt_start(7) + encode_message_record(3, b"b")
    items = decode_batch(data)
    assert items[0] == frame_pb2.Frame(call_id=1, message=frame_pb2.CallMessage(payload=b"a"))
    assert isinstance(items[1], FrameDecodeError) and items[1].call_id == 7
    assert "UTF-8" in items[1].reason
    assert items[2] == frame_pb2.Frame(call_id=3, message=frame_pb2.CallMessage(payload=b"b"))


def test_truncated_record_ends_the_batch_with_an_error() -> None:
    data = encode_message_record(1, b"a") + encode_message_record(3, b"bbbb")[:-2]
    items = decode_batch(data)
    assert len(items) == 2 and isinstance(items[1], FrameDecodeError)
    assert "truncated" in items[1].reason


def test_queue_coalesces_up_to_the_batch_size_and_sends_big_records_alone() -> None:
    queue = WriteQueue(batch_bytes=10)
    for record in (b"aaaa", b"bbbb", b"cc", b"d" * 30, b"e"):
        queue.push(record)
    assert queue.pending_bytes == 41
    assert queue.take_batch() == b"aaaabbbbcc"
    assert queue.take_batch() == b"d" * 30
    assert queue.take_batch() == b"e"
    assert queue.take_batch() is None and queue.pending_bytes == 0


def test_status_numbers_round_trip_and_unknown_numbers_read_as_unknown() -> None:
    for code in grpc.StatusCode:
        assert number_to_code(code_to_number(code)) is code
    assert code_to_number(grpc.StatusCode.DEADLINE_EXCEEDED) == 4
    assert number_to_code(99) is grpc.StatusCode.UNKNOWN


@given(st.floats(min_value=0, max_value=1e9))
def test_timeouts_round_trip_to_the_nanosecond(timeout: float) -> None:
    assert abs(duration_to_timeout(timeout_to_duration(timeout)) - timeout) <= 1e-9 * max(
        1, timeout
    )


def test_metadata_validation_matches_grpc_rules() -> None:
    entries = encode_metadata([("x-user", "ann"), ("blob-bin", b"\x00\xff")])
    decoded = decode_metadata(entries)
    assert list(decoded) == [("x-user", "ann"), ("blob-bin", b"\x00\xff")]
    for bad in [("Upper", "v"), ("x", "caf\u00e9"), ("x", "line\nbreak"), ("", "v")]:
        try:
            encode_metadata([bad])
        except MetadataError:
            continue
        raise AssertionError(f"{bad} accepted")


def _start(server: ServerMultiplexer, client: ClientMultiplexer, method: str = "/s/M") -> int:
    call_id = client.start(method, [("k", "v")], timeout=2.5)
    events = server.receive(_drain(client))
    assert events == [
        CallStarted(call_id, method, decode_invocation_metadata(encode_metadata([("k", "v")])), 2.5)
    ]
    return call_id


def _drain(mux: ServerMultiplexer | ClientMultiplexer) -> bytes:
    parts = []
    while (batch := mux.data_to_send()) is not None:
        parts.append(batch)
    return b"".join(parts)


def test_a_full_call_flows_between_the_two_state_machines() -> None:
    server, client = ServerMultiplexer(), ClientMultiplexer()
    call_id = _start(server, client)
    client.send_message(call_id, b"req")
    client.half_close(call_id)
    assert server.receive(_drain(client)) == [MessageReceived(call_id, b"req"), HalfClosed(call_id)]
    server.send_headers(call_id, [("h", "1")])
    server.send_message(call_id, b"resp")
    server.end(call_id, grpc.StatusCode.OK, "", [("t", "2")])
    events = client.receive(_drain(server))
    assert [type(e) for e in events] == [HeadersReceived, MessageReceived, CallEnded]
    end = events[2]
    assert isinstance(end, CallEnded) and end.code is grpc.StatusCode.OK
    assert list(end.trailers) == [("t", "2")]
    assert not client.is_open(call_id) and not server.is_open(call_id)


def test_out_of_order_frames_fail_only_their_call_with_a_precise_reason() -> None:
    server, client = ServerMultiplexer(), ClientMultiplexer()
    first, second = _start(server, client), _start(server, client)
    client.half_close(first)
    server.receive(_drain(client))
    # A message after half-close, hand-made because the client state machine forbids it.
    events = server.receive(encode_message_record(first, b"late"))
    assert events == [
        CallFailed(
            first, grpc.StatusCode.INVALID_ARGUMENT, f"call {first}: message after half-close"
        )
    ]
    ended = client.receive(_drain(server))
    assert [(type(e), e.call_id) for e in ended if isinstance(e, CallEnded)] == [(CallEnded, first)]
    assert server.is_open(second) and client.is_open(second)


def test_oversize_message_fails_its_call_with_resource_exhausted() -> None:
    server, client = ServerMultiplexer(max_receive_bytes=10), ClientMultiplexer()
    call_id = _start(server, client)
    client.send_message(call_id, b"x" * 11)
    (event,) = server.receive(_drain(client))
    assert event == CallFailed(
        call_id, grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (11 vs. 10)"
    )


def test_send_limit_is_checked_before_queueing() -> None:
    client = ClientMultiplexer(max_send_bytes=3)
    call_id = client.start("/s/M", None, None)
    _drain(client)
    try:
        client.send_message(call_id, b"four")
    except MessageTooLargeError as exc:
        assert "4 vs. 3" in str(exc)
    else:
        raise AssertionError("oversize send accepted")
    assert client.write_queue.pending_bytes == 0


def test_call_id_rules_and_unknown_calls() -> None:
    server = ServerMultiplexer()
    start = frame_pb2.CallStart(method="/s/M")
    assert isinstance(
        server.receive(encode_record(frame_pb2.Frame(call_id=5, start=start)))[0], CallStarted
    )
    for bad_id, reason in [(4, "is even"), (3, "not greater than the previous one (5)")]:
        (event,) = server.receive(encode_record(frame_pb2.Frame(call_id=bad_id, start=start)))
        assert isinstance(event, FrameDiscarded) and reason in event.details
    (event,) = server.receive(encode_message_record(9, b"x"))
    assert event == FrameDiscarded("message frame for call 9, which was never started")
    assert server.receive(encode_message_record(1, b"x")) == []  # stale: silently dropped
    replies = [f for f in decode_batch(_drain(server)) if isinstance(f, frame_pb2.Frame)]
    assert [f.WhichOneof("kind") for f in replies] == ["end", "end", "protocol_error"]
    assert replies[2].call_id == 0


def test_malformed_start_is_answered_with_an_end_for_its_id() -> None:
    server = ServerMultiplexer()
    events = server.receive(_corrupt_start(11))
    assert isinstance(events[0], FrameDiscarded)
    (reply,) = decode_batch(_drain(server))
    assert isinstance(reply, frame_pb2.Frame)
    assert reply.call_id == 11 and reply.end.code == code_to_number(
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_client_cancel_and_peer_protocol_errors() -> None:
    server, client = ServerMultiplexer(), ClientMultiplexer()
    call_id = _start(server, client)
    client.cancel(call_id)
    assert server.receive(_drain(client)) == [CallCancelled(call_id)]
    server.receive(encode_message_record(99, b""))  # unknown call: server reports it
    (event,) = client.receive(_drain(server))
    assert isinstance(event, PeerProtocolError) and event.code is grpc.StatusCode.INVALID_ARGUMENT
    assert client.data_to_send() is None  # never answer a ProtocolError with another


def test_client_rejects_server_frames_out_of_order() -> None:
    server, client = ServerMultiplexer(), ClientMultiplexer(max_receive_bytes=4)
    call_id = _start(server, client)
    server.send_message(call_id, b"ok")
    headers = frame_pb2.Frame(call_id=call_id, headers=frame_pb2.CallHeaders())
    events = client.receive(_drain(server) + encode_record(headers))
    assert events[1] == CallFailed(
        call_id, grpc.StatusCode.INTERNAL, f"call {call_id}: headers after headers or messages"
    )
    (cancel,) = decode_batch(_drain(client))
    assert isinstance(cancel, frame_pb2.Frame) and cancel.WhichOneof("kind") == "cancel"
    big_call = _start(server, client)
    server.send_message(big_call, b"12345")
    (event,) = client.receive(_drain(server))
    assert isinstance(event, CallFailed) and event.code is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_flow_control_windows_close_and_reopen_per_call() -> None:
    server, client = (
        ServerMultiplexer(max_receive_bytes=None),
        ClientMultiplexer(max_receive_bytes=None),
    )
    call_id, other = _start(server, client), _start(server, client)
    big = b"x" * (INITIAL_WINDOW // 4)
    sent = 0
    while server.can_send(call_id):  # the last message may overdraw the window
        server.send_message(call_id, big)
        sent += 1
    assert sent == 4 and server.can_send(other)
    received = [e for e in client.receive(_drain(server)) if isinstance(e, MessageReceived)]
    assert len(received) == 4
    client.consumed(call_id, len(big))
    assert server.receive(_drain(client)) == []  # under half a window consumed: no grant yet
    client.consumed(call_id, len(big))
    assert server.receive(_drain(client)) == [WindowOpened(call_id)]
    assert server.can_send(call_id)


def test_a_message_beyond_the_window_fails_its_call() -> None:
    server, client = ServerMultiplexer(max_receive_bytes=None), ClientMultiplexer()
    call_id = _start(server, client)
    payload = b"x" * INITIAL_WINDOW
    events = server.receive(
        encode_message_record(call_id, payload) + encode_message_record(call_id, b"")
    )
    assert events[0] == MessageReceived(call_id, payload)
    assert events[1] == CallFailed(
        call_id,
        grpc.StatusCode.INVALID_ARGUMENT,
        f"call {call_id}: message beyond the flow-control window",
    )
