"""Repeated metadata keys read the same over grpc.aio and over the WebSocket framing.

grpc.aio hands a server handler (and its interceptors) the request metadata as a tuple of
``(key, value)`` pairs in the order they arrived, repeated keys where the client put
them; a grpc.aio client reads headers and trailers as a grpc.aio.Metadata, which groups
repeated keys at the first one's place. One scenario runs over a grpc.aio server and a
WebSocketServer; its transcripts must be equal (grpc's own ``user-agent`` entry, which the
WebSocket framing does not add, is left out).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc
import grpc.aio
import pytest

from client.ws_channel import WebSocketChannel
from server.ws.server import WebSocketServer

pytestmark = pytest.mark.timeout(30)

INTERLEAVED = (("a", "1"), ("b", "2"), ("a", "3"), ("c-bin", b"\x00"), ("b", "4"))
HEADERS = (("h", "1"), ("g", "2"), ("h", "3"))
TRAILERS = (("t", "1"), ("u", "2"), ("t", "3"))
METHOD = "/parity.Metadata/Echo"


def _described(metadata: Any) -> tuple[Any, ...]:
    """Type, and each entry's type and (key, value), without grpc's user-agent."""
    entries = tuple(
        (type(entry).__name__, entry.key, entry.value)
        for entry in metadata
        if entry.key != "user-agent"
    )
    return (type(metadata).__name__, entries)


class Recorder(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """What the interceptor and the handler saw, per call."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        self.seen.append(("interceptor", _described(handler_call_details.invocation_metadata)))
        return await continuation(handler_call_details)

    async def echo(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        self.seen.append(("handler", _described(context.invocation_metadata() or ())))
        await context.send_initial_metadata(HEADERS)
        if request == b"abort":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no", TRAILERS)
        context.set_trailing_metadata(TRAILERS)
        return request


class Interleave(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Sends INTERLEAVED as given: grpc.aio passes an interceptor's metadata on as is
    (only metadata given to the stub call is grouped into a grpc.aio.Metadata)."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        details = grpc.aio.ClientCallDetails(
            details.method, details.timeout, cast(Any, list(INTERLEAVED)), None, None
        )
        return await continuation(details, request)


@pytest.fixture
async def targets() -> AsyncIterator[tuple[Recorder, dict[str, str]]]:
    recorder = Recorder()
    handlers = grpc.method_handlers_generic_handler(
        "parity.Metadata", {"Echo": grpc.unary_unary_rpc_method_handler(recorder.echo)}
    )
    grpc_server = grpc.aio.server(interceptors=[recorder], options=[("grpc.so_reuseport", 0)])
    ws_server = WebSocketServer(interceptors=[recorder])
    for server in (grpc_server, ws_server):
        server.add_generic_rpc_handlers((handlers,))
    grpc_port = grpc_server.add_insecure_port("127.0.0.1:0")
    ws_port = ws_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    await ws_server.start()
    try:
        yield recorder, {"grpc": f"127.0.0.1:{grpc_port}", "ws": f"ws://127.0.0.1:{ws_port}"}
    finally:
        await asyncio.gather(grpc_server.stop(1.0), ws_server.stop(1.0))


def _channel(kind: str, target: str, interceptors: list[Any]) -> grpc.aio.Channel:
    if kind == "grpc":
        return grpc.aio.insecure_channel(target, interceptors=interceptors)
    return WebSocketChannel(target, interceptors=interceptors)


async def _scenario(recorder: Recorder, kind: str, target: str) -> list[tuple[Any, ...]]:
    recorder.seen.clear()
    transcript: list[tuple[Any, ...]] = []
    async with _channel(kind, target, [Interleave()]) as channel:
        call = _echo(channel)(b"ok")
        transcript.append(("response", await call))
        transcript.append(("headers", _described_client(await call.initial_metadata())))
        transcript.append(("trailers", _described_client(await call.trailing_metadata())))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await _echo(channel)(b"abort")
        error = failed.value
        transcript.append(("error", error.code(), error.details()))
        transcript.append(("error headers", _described_client(error.initial_metadata())))
        transcript.append(("error trailers", _described_client(error.trailing_metadata())))
    async with _channel(kind, target, []) as channel:
        # Metadata given to the call itself: grpc.aio groups it before sending.
        await _echo(channel)(b"ok", metadata=INTERLEAVED)
    transcript.extend(recorder.seen)
    return transcript


def _echo(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(METHOD, None, None)


def _described_client(metadata: Any) -> tuple[Any, ...]:
    return (type(metadata).__name__, tuple(metadata))


async def test_repeated_keys_arrive_in_the_same_order_and_types_as_on_grpc_aio(
    targets: tuple[Recorder, dict[str, str]],
) -> None:
    recorder, addresses = targets
    native = await _scenario(recorder, "grpc", addresses["grpc"])
    websocket = await _scenario(recorder, "ws", addresses["ws"])
    assert websocket == native
    # What grpc.aio does, spelled out: the server sees arrival order, the client groups.
    arrived = tuple(("_Metadatum", key, value) for key, value in INTERLEAVED)
    assert ("handler", ("tuple", arrived)) in native
    assert ("interceptor", ("tuple", arrived)) in native
    assert ("headers", ("Metadata", (("h", "1"), ("h", "3"), ("g", "2")))) in native
    assert ("trailers", ("Metadata", (("t", "1"), ("t", "3"), ("u", "2")))) in native
