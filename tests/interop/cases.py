"""The gRPC interop client cases (grpc/grpc doc/interop-test-descriptions.md), each
asserting what the descriptions require and returning what it observed, so the harness
can compare transports call by call.

Every case takes the two stubs and returns a ``CaseOutcome``: per call, the status code
and details, initial and trailing metadata, how many response messages arrived and the
exception type the caller saw. ``handler_calls`` is how many TestService handlers the
case reaches for certain (None when that depends on timing, e.g. a call cancelled right
after it starts may or may not reach the server).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio
from src.proto.grpc.testing import empty_pb2, messages_pb2, test_pb2_grpc

from tests.interop.servicer import INITIAL_METADATA_KEY, TRAILING_METADATA_KEY
from wire.sentinels import EOF

if TYPE_CHECKING:  # the async stub types exist only in the generated .pyi
    Stub: TypeAlias = test_pb2_grpc.TestServiceAsyncStub
    UnimplementedStub: TypeAlias = test_pb2_grpc.UnimplementedServiceAsyncStub

# Sizes the descriptions prescribe.
REQUEST_SIZES = (27182, 8, 1828, 45904)
RESPONSE_SIZES = (31415, 9, 2653, 58979)
LARGE_REQUEST_SIZE = 271828
LARGE_RESPONSE_SIZE = 314159
STATUS_DETAILS = "test status message"
SPECIAL_DETAILS = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
ECHO_INITIAL_VALUE = "test_initial_metadata_value"
ECHO_TRAILING_VALUE = b"\x0a\x0b\x0a\x0b\x0a\x0b"
# timeout_on_sleeping_server: the descriptions' 1 ms deadline may end the call before it
# reaches the server; like gRPC's Python interop client, use a deadline the request
# outlives and a server sleep far longer than it.
SLEEPING_DEADLINE_SECONDS = 1.0
SLEEP_INTERVAL_US = 60_000_000


@dataclass(frozen=True)
class CallOutcome:
    """What the caller observed of one call."""

    code: grpc.StatusCode
    details: str
    initial_metadata: tuple[tuple[str, str | bytes], ...]
    trailing_metadata: tuple[tuple[str, str | bytes], ...]
    messages: int
    exception: str | None  # type name of what the caller's await raised


@dataclass
class CaseOutcome:
    """Every call of one case, in order."""

    calls: list[CallOutcome] = field(default_factory=list)
    handler_calls: int | None = 0


async def _finish(
    call: Any, messages: int, exception: BaseException | None
) -> CallOutcome:
    return CallOutcome(
        code=await call.code(),
        details=await call.details() or "",
        initial_metadata=_pairs(await call.initial_metadata()),
        trailing_metadata=_pairs(await call.trailing_metadata()),
        messages=messages,
        exception=None if exception is None else type(exception).__name__,
    )


def _pairs(metadata: Any) -> tuple[tuple[str, str | bytes], ...]:
    return tuple((key, value) for key, value in (metadata or ()))


async def _unary(call: Any) -> tuple[CallOutcome, Any]:
    """Awaits a single-response call; the outcome and the response (None on failure)."""
    try:
        response = await call
    except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
        return await _finish(call, 0, exc), None
    return await _finish(call, 1, None), response


async def _drain(call: Any, messages: int = 0) -> CallOutcome:
    """Reads a response stream to its end."""
    try:
        while await call.read() is not EOF:
            messages += 1
    except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
        return await _finish(call, messages, exc)
    return await _finish(call, messages, None)


def _zeros(size: int) -> messages_pb2.Payload:
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=b"\x00" * size)


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def _stream_request(
    response_size: int, payload_size: int = 0, **extra: Any
) -> messages_pb2.StreamingOutputCallRequest:
    return messages_pb2.StreamingOutputCallRequest(
        response_type=messages_pb2.COMPRESSABLE,
        response_parameters=[messages_pb2.ResponseParameters(size=response_size)],
        payload=_zeros(payload_size),
        **extra,
    )


async def empty_unary(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    outcome, response = await _unary(stub.EmptyCall(empty_pb2.Empty()))
    _check(response == empty_pb2.Empty(), "EmptyCall answers an empty message")
    return CaseOutcome([outcome], handler_calls=1)


async def large_unary(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    request = messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE,
        response_size=LARGE_RESPONSE_SIZE,
        payload=_zeros(LARGE_REQUEST_SIZE),
    )
    outcome, response = await _unary(stub.UnaryCall(request))
    _check(response is not None, f"UnaryCall failed: {outcome}")
    _check(response.payload.body == b"\x00" * LARGE_RESPONSE_SIZE, "payload of 314159 zeros")
    return CaseOutcome([outcome], handler_calls=1)


async def client_streaming(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    async def requests() -> AsyncIterator[messages_pb2.StreamingInputCallRequest]:
        for size in REQUEST_SIZES:
            yield messages_pb2.StreamingInputCallRequest(payload=_zeros(size))

    outcome, response = await _unary(stub.StreamingInputCall(requests()))
    _check(response is not None, f"StreamingInputCall failed: {outcome}")
    _check(response.aggregated_payload_size == 74922, "aggregated size 74922")
    return CaseOutcome([outcome], handler_calls=1)


async def server_streaming(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    request = messages_pb2.StreamingOutputCallRequest(
        response_type=messages_pb2.COMPRESSABLE,
        response_parameters=[messages_pb2.ResponseParameters(size=s) for s in RESPONSE_SIZES],
    )
    call = stub.StreamingOutputCall(request)
    sizes = []
    async for response in call:
        sizes.append(len(response.payload.body))
    _check(tuple(sizes) == RESPONSE_SIZES, f"response sizes {sizes}")
    return CaseOutcome([await _finish(call, len(sizes), None)], handler_calls=1)


async def ping_pong(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    call = stub.FullDuplexCall(None)
    for response_size, payload_size in zip(RESPONSE_SIZES, REQUEST_SIZES, strict=True):
        await call.write(_stream_request(response_size, payload_size))
        response = await _read_one(call)
        _check(
            len(response.payload.body) == response_size,
            f"response of {response_size} bytes",
        )
    await call.done_writing()
    outcome = await _drain(call, len(RESPONSE_SIZES))
    _check(outcome.code is grpc.StatusCode.OK, f"ping_pong ends OK: {outcome}")
    return CaseOutcome([outcome], handler_calls=1)


async def empty_stream(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    call = stub.FullDuplexCall(None)
    await call.done_writing()
    outcome = await _drain(call)
    _check(outcome.messages == 0 and outcome.code is grpc.StatusCode.OK, f"{outcome}")
    return CaseOutcome([outcome], handler_calls=1)


async def cancel_after_begin(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    call = stub.StreamingInputCall(None)
    call.cancel()
    outcome, _response = await _unary(call)
    _check(call.cancelled(), "cancelled() after cancel()")
    _check(outcome.code is grpc.StatusCode.CANCELLED, f"{outcome}")
    return CaseOutcome([outcome], handler_calls=None)


async def cancel_after_first_response(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    call = stub.FullDuplexCall(None)
    await call.write(_stream_request(RESPONSE_SIZES[0], REQUEST_SIZES[0]))
    response = await _read_one(call)
    _check(len(response.payload.body) == RESPONSE_SIZES[0], "first response")
    call.cancel()
    outcome = await _drain(call, 1)
    _check(outcome.code is grpc.StatusCode.CANCELLED, f"{outcome}")
    write_error = await _exception_of(call.write(_stream_request(1)))
    return CaseOutcome(
        [outcome, _with_exception(outcome, f"write: {write_error}")], handler_calls=1
    )


async def timeout_on_sleeping_server(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    call = stub.FullDuplexCall(None, timeout=SLEEPING_DEADLINE_SECONDS)
    request = messages_pb2.StreamingOutputCallRequest(
        response_type=messages_pb2.COMPRESSABLE,
        payload=_zeros(REQUEST_SIZES[0]),
        response_parameters=[messages_pb2.ResponseParameters(interval_us=SLEEP_INTERVAL_US)],
    )
    write_error = await _exception_of(call.write(request))
    outcome = await _drain(call)
    _check(outcome.code is grpc.StatusCode.DEADLINE_EXCEEDED, f"{outcome}")
    return CaseOutcome(
        [outcome, _with_exception(outcome, f"write: {write_error}")], handler_calls=None
    )


async def custom_metadata(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    metadata = (
        (INITIAL_METADATA_KEY, ECHO_INITIAL_VALUE),
        (TRAILING_METADATA_KEY, ECHO_TRAILING_VALUE),
    )
    request = messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE, response_size=1, payload=_zeros(1)
    )
    unary, _response = await _unary(stub.UnaryCall(request, metadata=metadata))
    call = stub.FullDuplexCall(None, metadata=metadata)
    await call.write(_stream_request(1))
    await call.read()
    await call.done_writing()
    stream = await _drain(call, 1)
    for outcome in (unary, stream):
        _check(
            dict(outcome.initial_metadata).get(INITIAL_METADATA_KEY) == ECHO_INITIAL_VALUE,
            f"initial metadata echoed: {outcome}",
        )
        _check(
            dict(outcome.trailing_metadata).get(TRAILING_METADATA_KEY) == ECHO_TRAILING_VALUE,
            f"trailing metadata echoed: {outcome}",
        )
    return CaseOutcome([unary, stream], handler_calls=2)


async def _echo_status_calls(stub: Stub, details: str, full_duplex: bool) -> list[CallOutcome]:
    status = messages_pb2.EchoStatus(code=grpc.StatusCode.UNKNOWN.value[0], message=details)
    request = messages_pb2.SimpleRequest(
        response_type=messages_pb2.COMPRESSABLE,
        response_size=1,
        payload=_zeros(1),
        response_status=status,
    )
    outcomes = [(await _unary(stub.UnaryCall(request)))[0]]
    if full_duplex:
        call = stub.FullDuplexCall(None)
        await call.write(_stream_request(1, 1, response_status=status))
        await call.done_writing()
        outcomes.append(await _drain(call))
    for outcome in outcomes:
        _check(outcome.code is grpc.StatusCode.UNKNOWN, f"status UNKNOWN: {outcome}")
        _check(outcome.details == details, f"details {details!r}: {outcome}")
    return outcomes


async def status_code_and_message(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    return CaseOutcome(await _echo_status_calls(stub, STATUS_DETAILS, True), handler_calls=2)


async def special_status_message(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    return CaseOutcome(await _echo_status_calls(stub, SPECIAL_DETAILS, False), handler_calls=1)


async def unimplemented_method(stub: Stub, _: UnimplementedStub) -> CaseOutcome:
    outcome, _response = await _unary(stub.UnimplementedCall(empty_pb2.Empty()))
    _check(outcome.code is grpc.StatusCode.UNIMPLEMENTED, f"{outcome}")
    return CaseOutcome([outcome], handler_calls=0)


async def unimplemented_service(_: Stub, unimplemented: UnimplementedStub) -> CaseOutcome:
    outcome, _response = await _unary(unimplemented.UnimplementedCall(empty_pb2.Empty()))
    _check(outcome.code is grpc.StatusCode.UNIMPLEMENTED, f"{outcome}")
    return CaseOutcome([outcome], handler_calls=0)


async def _read_one(call: Any) -> messages_pb2.StreamingOutputCallResponse:
    response = await call.read()
    _check(isinstance(response, messages_pb2.StreamingOutputCallResponse), f"{response!r}")
    return response  # type: ignore[no-any-return]


async def _exception_of(awaitable: Awaitable[Any]) -> str | None:
    """The type name of what awaiting raises (None when it returns)."""
    try:
        await awaitable
    except BaseException as exc:  # the exception type is what is being compared
        return type(exc).__name__
    return None


def _with_exception(outcome: CallOutcome, exception: str) -> CallOutcome:
    return CallOutcome(
        outcome.code,
        outcome.details,
        outcome.initial_metadata,
        outcome.trailing_metadata,
        outcome.messages,
        exception,
    )


Case: TypeAlias = "Callable[[Stub, UnimplementedStub], Awaitable[CaseOutcome]]"

CASES: dict[str, Case] = {
    case.__name__: case
    for case in (
        empty_unary,
        large_unary,
        client_streaming,
        server_streaming,
        ping_pong,
        empty_stream,
        cancel_after_begin,
        cancel_after_first_response,
        timeout_on_sleeping_server,
        custom_metadata,
        status_code_and_message,
        special_status_message,
        unimplemented_method,
        unimplemented_service,
    )
}
