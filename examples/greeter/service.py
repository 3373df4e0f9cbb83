"""The Greeter servicer: plain business logic over the generated types, the same
instance for every listener."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
from helloworld.v1 import greeter_pb2, greeter_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

GREETINGS = ("Hello", "Bonjour", "Hallo")


class Greeter(greeter_pb2_grpc.GreeterServicer):
    """helloworld.v1.Greeter."""

    async def SayHello(
        self, request: greeter_pb2.HelloRequest, context: Context
    ) -> greeter_pb2.HelloReply:
        if not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name is required")
        return greeter_pb2.HelloReply(message=f"Hello, {request.name}!")

    async def SayHelloManyWays(
        self, request: greeter_pb2.HelloRequest, context: Context
    ) -> AsyncIterator[greeter_pb2.HelloReply]:
        for greeting in GREETINGS:
            yield greeter_pb2.HelloReply(message=f"{greeting}, {request.name}!")

    async def Chat(
        self, request_iterator: AsyncIterator[greeter_pb2.HelloRequest], context: Context
    ) -> AsyncIterator[greeter_pb2.HelloReply]:
        async for request in request_iterator:
            yield greeter_pb2.HelloReply(message=f"Hello, {request.name}!")


GREETER = Greeter()


def add_services(server: grpc.aio.Server) -> None:
    """Registers Greeter on ``server``: the function ``syncwire serve --services
    examples.greeter.service:add_services`` calls once per listener."""
    greeter_pb2_grpc.add_GreeterServicer_to_server(GREETER, server)
