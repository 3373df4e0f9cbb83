"""Calls a servicer method in whichever style it is written, as grpc.aio does.

Unary responses: ``async def`` returning the response, or a plain function (run in a
worker thread). Streaming responses: an async generator, an ``async def`` that uses
``context.write()`` and returns None, or a plain (generator) function run in a worker
thread. Streaming requests arrive as an async iterator (also iterable from a worker
thread) and through ``context.read()``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from wire.sentinels import EOF

if TYPE_CHECKING:
    from server.ws.call import ServerCall
    from server.ws.context import WebSocketServicerContext

_DONE = object()


async def invoke_handler(
    handler: grpc.RpcMethodHandler[Any, Any],
    call: ServerCall,
    context: WebSocketServicerContext[Any, Any],
) -> None:
    """Runs the handler to completion; responses go out through ``call``."""
    if handler.request_streaming:
        request: Any = call.requests()
    else:
        request = await call.read_request()
        if request is EOF:
            call.end(grpc.StatusCode.INTERNAL, "unary call half-closed without a request")
            return
    if handler.response_streaming:
        method = handler.stream_stream if handler.request_streaming else handler.unary_stream
        await _stream_responses(_require(method), request, call, context)
    else:
        method = handler.stream_unary if handler.request_streaming else handler.unary_unary
        response = await _call(_require(method), request, context)
        if context.code() is grpc.StatusCode.OK:  # grpc discards the response otherwise
            await call.send_response(response)


def _require(method: Callable[..., Any] | None) -> Callable[..., Any]:
    if method is None:
        raise TypeError("RpcMethodHandler lacks the behaviour its streaming flags require")
    return method


async def _call(method: Callable[..., Any], request: Any, context: Any) -> Any:
    """The method's result, awaiting coroutines and running plain functions off the loop."""
    if inspect.iscoroutinefunction(method):
        return await method(request, context)
    result = await asyncio.to_thread(method, request, context)
    return await result if inspect.isawaitable(result) else result


async def _stream_responses(
    method: Callable[..., Any], request: Any, call: ServerCall, context: Any
) -> None:
    if inspect.isasyncgenfunction(method):
        async for response in method(request, context):
            await call.send_response(response)
        return
    responses = await _call(method, request, context)
    if responses is None:  # reader/writer style: it wrote through the context
        return
    if isinstance(responses, AsyncIterable):
        async for response in responses:
            await call.send_response(response)
    else:
        iterator: Iterator[Any] = iter(responses)
        while (response := await asyncio.to_thread(next, iterator, _DONE)) is not _DONE:
            await call.send_response(response)
