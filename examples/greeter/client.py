"""Calls Greeter over native gRPC or over the WebSocket framing: the same stub code,
only the channel differs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
from helloworld.v1 import greeter_pb2, greeter_pb2_grpc

from client.ws_channel import WebSocketChannel


def open_channel(target: str) -> grpc.aio.Channel:
    """``ws://host:port`` (or ``wss://``) for the WebSocket framing, ``host:port`` for gRPC."""
    if target.startswith(("ws://", "wss://")):
        return WebSocketChannel(target)
    return grpc.aio.insecure_channel(target)


async def greet(target: str, name: str) -> list[str]:
    """Every kind of call once; the greetings received, in order."""
    async with open_channel(target) as channel:
        stub = greeter_pb2_grpc.GreeterStub(channel)
        reply = await stub.SayHello(greeter_pb2.HelloRequest(name=name), timeout=10)
        greetings = [reply.message]
        async for many in stub.SayHelloManyWays(greeter_pb2.HelloRequest(name=name)):
            greetings.append(many.message)

        async def names() -> AsyncIterator[greeter_pb2.HelloRequest]:
            for friend in ("Ada", "Grace"):
                yield greeter_pb2.HelloRequest(name=friend)

        async for chat in stub.Chat(names()):
            greetings.append(chat.message)
        try:
            await stub.SayHello(greeter_pb2.HelloRequest(), timeout=10)
        except grpc.aio.AioRpcError as error:
            greetings.append(f"{error.code().name}: {error.details()}")
        return greetings
