"""Every exception ends its call: from a handler, an interceptor, a deserializer or
while the status is being sent. The call gets a status (what grpc.aio gives where
grpc.aio gives one), the server logs it once, and the call is freed at once, so
``stop(grace)`` never waits on it.

Where grpc.aio answers, the WebSocket framing must answer the same (the tests run both);
where grpc.aio leaves the call hanging until the client's deadline (a handler raising
CancelledError itself, a status whose details cannot be encoded), the WebSocket framing
still ends it, and those tests run on the framing only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import pytest

from server.ws.server import WebSocketServer
from tests.interop.harness import server_logs, serving

SERVICE = "test.Errors"
BOTH = ["grpc", "ws"]
RAW: dict[str, Any] = {"request_serializer": None, "response_deserializer": None}  # bytes
Context = grpc.aio.ServicerContext[Any, Any]


async def _abort_int(request: bytes, context: Context) -> bytes:
    await context.abort(5, "no such thing")  # type: ignore[arg-type]  # grpc.aio accepts an int


async def _abort_int_stream(request: bytes, context: Context) -> AsyncIterator[bytes]:
    yield b"first"
    await context.abort(5, "no such thing")  # type: ignore[arg-type]


async def _abort_int_requests(requests: AsyncIterator[bytes], context: Context) -> bytes:
    async for _ in requests:
        await context.abort(5, "no such thing")  # type: ignore[arg-type]
    return b""


async def _abort_int_bidi(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request
        await context.abort(5, "no such thing")  # type: ignore[arg-type]


async def _abort_unknown_number(request: bytes, context: Context) -> bytes:
    await context.abort(99, "what code")  # type: ignore[arg-type]


async def _echo(request: bytes, context: Context) -> bytes:
    return request


async def _raise_cancelled(request: bytes, context: Context) -> bytes:
    raise asyncio.CancelledError()


async def _unencodable_details(request: bytes, context: Context) -> bytes:
    await context.abort(grpc.StatusCode.NOT_FOUND, "\ud800 is a lone surrogate")


def _undecodable(data: bytes) -> bytes:
    raise ValueError("cannot decode")


def _register(server: grpc.aio.Server) -> None:
    unary = grpc.unary_unary_rpc_method_handler
    handlers = {
        "AbortInt": unary(_abort_int),
        "AbortIntStream": grpc.unary_stream_rpc_method_handler(_abort_int_stream),
        "AbortIntRequests": grpc.stream_unary_rpc_method_handler(_abort_int_requests),
        "AbortIntBidi": grpc.stream_stream_rpc_method_handler(_abort_int_bidi),
        "AbortUnknownNumber": unary(_abort_unknown_number),
        "Undecodable": unary(_echo, request_deserializer=_undecodable),
        "RaiseCancelled": unary(_raise_cancelled),
        "UnencodableDetails": unary(_unencodable_details),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


class _BrokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        if handler_call_details.method.endswith("/Echo"):
            raise RuntimeError("interceptor broke")
        return await continuation(handler_call_details)


async def _status(call: Any) -> tuple[grpc.StatusCode, str, int]:
    """Code, details and number of response messages of a finished call."""
    messages = 0
    try:
        if hasattr(call, "read"):
            async for _ in call:
                messages += 1
        else:
            await call
            messages = 1
    except grpc.aio.AioRpcError:
        pass
    return await call.code(), await call.details(), messages


def _free(ws_server: WebSocketServer | None) -> None:
    """No call is left on any connection of the WebSocket server."""
    if ws_server is not None:
        assert [driver.call_count for driver in ws_server.connections] in ([], [0])


async def _one(requests: list[bytes]) -> AsyncIterator[bytes]:
    for request in requests:
        yield request


@pytest.mark.parametrize("transport", BOTH)
async def test_abort_with_an_int_code_ends_every_call_kind(transport: str) -> None:
    async with serving(transport, _register) as served:
        channel = served.channel
        with server_logs() as logs:
            async with asyncio.timeout(20):
                results = [
                    await _status(channel.unary_unary(f"/{SERVICE}/AbortInt", **RAW)(b"x")),
                    await _status(channel.unary_stream(f"/{SERVICE}/AbortIntStream", **RAW)(b"x")),
                    await _status(
                        channel.stream_unary(f"/{SERVICE}/AbortIntRequests", **RAW)(_one([b"x"]))
                    ),
                    await _status(
                        channel.stream_stream(f"/{SERVICE}/AbortIntBidi", **RAW)(_one([b"x"]))
                    ),
                    await _status(channel.unary_unary(f"/{SERVICE}/AbortUnknownNumber", **RAW)(b"x")),
                ]
        _free(served.ws_server)
    not_found = (grpc.StatusCode.NOT_FOUND, "no such thing")
    assert results == [
        (*not_found, 0),
        (*not_found, 1),
        (*not_found, 0),
        (*not_found, 1),
        (grpc.StatusCode.UNKNOWN, "what code", 0),
    ]
    assert logs == []


@pytest.mark.parametrize("transport", BOTH)
async def test_interceptor_exception_ends_the_call_unknown_and_is_logged_once(
    transport: str,
) -> None:
    async with serving(transport, _register, interceptors=[_BrokenInterceptor()]) as served:
        with server_logs() as logs:
            async with asyncio.timeout(20):
                status = await _status(served.channel.unary_unary(f"/{SERVICE}/Echo", **RAW)(b"x"))
        _free(served.ws_server)
    assert status == (
        grpc.StatusCode.UNKNOWN,
        "Unexpected <class 'RuntimeError'>: interceptor broke",
        0,
    )
    assert logs == ["ERROR"]


@pytest.mark.parametrize("transport", BOTH)
async def test_undecodable_request_ends_the_call_as_grpc_aio_does(transport: str) -> None:
    async with serving(transport, _register) as served:
        with server_logs() as logs:
            async with asyncio.timeout(20):
                status = await _status(served.channel.unary_unary(f"/{SERVICE}/Undecodable", **RAW)(b"x"))
        _free(served.ws_server)
    assert status == (grpc.StatusCode.UNKNOWN, "Unexpected <class 'ValueError'>: cannot decode", 0)
    assert logs == ["ERROR"]


async def test_handler_raising_cancelled_error_still_ends_its_call() -> None:
    # grpc.aio sends no status here (the client waits for its deadline); the framing
    # ends the call like any other handler exception.
    async with serving("ws", _register) as served:
        with server_logs() as logs:
            async with asyncio.timeout(20):
                status = await _status(
                    served.channel.unary_unary(f"/{SERVICE}/RaiseCancelled", **RAW)(b"x")
                )
        _free(served.ws_server)
    assert status == (
        grpc.StatusCode.UNKNOWN,
        "Unexpected <class 'asyncio.exceptions.CancelledError'>: ",
        0,
    )
    assert logs == ["ERROR"]


async def test_status_that_cannot_be_sent_ends_the_call_internal_and_frees_it() -> None:
    # grpc.aio fails while encoding these details and leaves the call to the client's
    # deadline; the framing ends it INTERNAL, logs once, and stop(grace) does not wait.
    async with serving("ws", _register) as served:
        assert served.ws_server is not None
        with server_logs() as logs:
            async with asyncio.timeout(20):
                status = await _status(
                    served.channel.unary_unary(f"/{SERVICE}/UnencodableDetails", **RAW)(b"x")
                )
        _free(served.ws_server)
        async with asyncio.timeout(10):  # a call left open would hold stop() for the grace
            await served.ws_server.stop(grace=60)
    assert status[0] is grpc.StatusCode.INTERNAL and status[2] == 0
    assert status[1].startswith("Failed to send status: ")
    assert logs == ["ERROR"]
