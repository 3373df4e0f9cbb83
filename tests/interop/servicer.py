"""The gRPC interop test server, as gRPC's interop test descriptions specify it
(grpc/grpc doc/interop-test-descriptions.md, "Server"), written as grpc.aio handlers.

Like gRPC's own Python interop servicer, it echoes a requested status by calling
``context.abort`` with the status code as an *int* (grpc.aio accepts that), echoes the
``x-grpc-test-echo-initial`` and ``x-grpc-test-echo-trailing-bin`` request metadata as
initial and trailing metadata, and leaves ``UnimplementedCall`` unimplemented the way the
generated base class does (UNIMPLEMENTED set on the context, NotImplementedError raised).
One instance serves every transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from src.proto.grpc.testing import empty_pb2, messages_pb2, test_pb2_grpc

from tests.interop.observer import HandlerObserver

INITIAL_METADATA_KEY = "x-grpc-test-echo-initial"
TRAILING_METADATA_KEY = "x-grpc-test-echo-trailing-bin"

Context = grpc.aio.ServicerContext[Any, Any]


async def _echo_metadata(context: Context) -> None:
    """Sends the echo-initial value as initial metadata and sets echo-trailing-bin as a
    trailer, when the client sent them."""
    metadata = dict(context.invocation_metadata() or ())
    if INITIAL_METADATA_KEY in metadata:
        await context.send_initial_metadata(
            ((INITIAL_METADATA_KEY, metadata[INITIAL_METADATA_KEY]),)
        )
    if TRAILING_METADATA_KEY in metadata:
        context.set_trailing_metadata(((TRAILING_METADATA_KEY, metadata[TRAILING_METADATA_KEY]),))


async def _echo_status(status: messages_pb2.EchoStatus, context: Context) -> None:
    """Ends the call with the requested status, passing the code as an int as gRPC's own
    interop servicer does."""
    code: Any = status.code
    await context.abort(code, status.message)


def _payload(size: int) -> messages_pb2.Payload:
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE, body=b"\x00" * size)


async def _stream_responses(
    request: messages_pb2.StreamingOutputCallRequest,
) -> AsyncIterator[messages_pb2.StreamingOutputCallResponse]:
    for parameters in request.response_parameters:
        if parameters.interval_us:
            await asyncio.sleep(parameters.interval_us / 1_000_000)  # the test asks for it
        yield messages_pb2.StreamingOutputCallResponse(payload=_payload(parameters.size))


class InteropServicer(test_pb2_grpc.TestServiceServicer):
    """grpc.testing.TestService. ``observer`` (optional) records how each handler ended."""

    def __init__(self, observer: HandlerObserver | None = None) -> None:
        self.observer = observer or HandlerObserver()

    async def EmptyCall(self, request: empty_pb2.Empty, context: Context) -> empty_pb2.Empty:
        with self.observer.handler("EmptyCall"):
            return empty_pb2.Empty()

    async def UnaryCall(
        self, request: messages_pb2.SimpleRequest, context: Context
    ) -> messages_pb2.SimpleResponse:
        with self.observer.handler("UnaryCall"):
            await _echo_metadata(context)
            if request.HasField("response_status"):
                await _echo_status(request.response_status, context)
            return messages_pb2.SimpleResponse(payload=_payload(request.response_size))

    async def CacheableUnaryCall(
        self, request: messages_pb2.SimpleRequest, context: Context
    ) -> messages_pb2.SimpleResponse:
        with self.observer.handler("CacheableUnaryCall"):
            return messages_pb2.SimpleResponse(payload=_payload(request.response_size))

    async def StreamingOutputCall(
        self, request: messages_pb2.StreamingOutputCallRequest, context: Context
    ) -> AsyncIterator[messages_pb2.StreamingOutputCallResponse]:
        with self.observer.handler("StreamingOutputCall"):
            await _echo_metadata(context)
            async for response in _stream_responses(request):
                yield response
            if request.HasField("response_status"):
                await _echo_status(request.response_status, context)

    async def StreamingInputCall(
        self,
        request_iterator: AsyncIterator[messages_pb2.StreamingInputCallRequest],
        context: Context,
    ) -> messages_pb2.StreamingInputCallResponse:
        with self.observer.handler("StreamingInputCall") as progress:
            size = 0
            async for request in request_iterator:
                size += len(request.payload.body)
            progress.requests_ended = True
            return messages_pb2.StreamingInputCallResponse(aggregated_payload_size=size)

    async def FullDuplexCall(
        self,
        request_iterator: AsyncIterator[messages_pb2.StreamingOutputCallRequest],
        context: Context,
    ) -> AsyncIterator[messages_pb2.StreamingOutputCallResponse]:
        with self.observer.handler("FullDuplexCall") as progress:
            await _echo_metadata(context)
            async for request in request_iterator:
                if request.HasField("response_status"):
                    await _echo_status(request.response_status, context)
                async for response in _stream_responses(request):
                    yield response
            progress.requests_ended = True

    async def HalfDuplexCall(
        self,
        request_iterator: AsyncIterator[messages_pb2.StreamingOutputCallRequest],
        context: Context,
    ) -> AsyncIterator[messages_pb2.StreamingOutputCallResponse]:
        with self.observer.handler("HalfDuplexCall") as progress:
            await _echo_metadata(context)
            requests = [request async for request in request_iterator]
            progress.requests_ended = True
            for request in requests:
                async for response in _stream_responses(request):
                    yield response

    def UnimplementedCall(self, request: empty_pb2.Empty, context: Any) -> empty_pb2.Empty:
        """Not implemented, exactly as the generated base class leaves it."""
        context.set_code(grpc.StatusCode.UNIMPLEMENTED)
        context.set_details("Method not implemented!")
        raise NotImplementedError("Method not implemented!")


def add_interop_service(server: grpc.aio.Server, servicer: InteropServicer) -> None:
    """Registers TestService on any grpc.aio.Server (native or WebSocketServer)."""
    test_pb2_grpc.add_TestServiceServicer_to_server(servicer, server)


INTEROP_SERVICER = InteropServicer()
"""The instance ``register_interop_service`` serves (one for every listener)."""


def register_interop_service(server: grpc.aio.Server) -> None:
    """A service registration (``syncwire serve --services
    tests.interop.servicer:register_interop_service``): TestService on ``server``."""
    add_interop_service(server, INTEROP_SERVICER)
