"""Turns undecodable requests into INVALID_ARGUMENT for that call only.

grpc.aio answers a request it cannot deserialize with UNKNOWN (the deserializer's
exception, ``Unexpected <class '...DecodeError'>: ...``). A server interceptor
swaps each method's request deserializer for a lenient one: an undecodable message
becomes a `MalformedMessage` marker, which the wrapped behaviour turns into
INVALID_ARGUMENT (unary requests) or a `MalformedRequestError` raised from the request
iterator (streams), which the servicer maps to INVALID_ARGUMENT.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError


class MalformedRequestError(Exception):
    """A client sent bytes that do not decode as the method's request message."""


class MalformedMessage:
    """Stands in for a request that failed to decode."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """Wraps a request deserializer: bytes it cannot decode become a `MalformedMessage`
    (with a "malformed request message (N bytes): ..." reason) instead of an
    exception; None stays None.
    """
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, ValueError, TypeError) as exc:
            return MalformedMessage(f"malformed request message ({len(data)} bytes): {exc}")

    return decode


async def checked_requests(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Yields decoded requests; raises MalformedRequestError at the first bad one."""
    async for request in requests:
        if isinstance(request, MalformedMessage):
            raise MalformedRequestError(request.reason)
        yield request


def _wrap_unary_request(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, MalformedMessage):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        return await behaviour(request, context)

    return call


def _wrap_unary_stream(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behaviour):
        # A coroutine that sends with context.write (grpc_health's Watch does).
        return _wrap_unary_request(behaviour)

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, MalformedMessage):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        async for response in behaviour(request, context):
            yield response

    return call


def _wrap_stream_unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    async def call(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        return await behaviour(checked_requests(requests), context)

    return call


def _wrap_stream_stream(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    # grpc.aio inspects the handler: it must itself be an async generator function.
    async def call(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        async for response in behaviour(checked_requests(requests), context):
            yield response

    return call


_WRAPPED_CACHE_SIZE = 256


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Applies the lenient deserializer to the methods of ``services`` (full service
    names, e.g. ``syncwire.v1.SyncService``); other services (an application's own)
    answer undecodable requests exactly as grpc.aio does."""

    def __init__(self, *services: str) -> None:
        self._prefixes = tuple(f"/{service}/" for service in services)
        # id(handler) -> (handler, wrapped): a method's handler is wrapped once, not per
        # call; bounded in case a generic handler returns a new object per call.
        self._wrapped: dict[int, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """The method's handler, rebuilt with `grpc.*_rpc_method_handler` around the
        lenient deserializer, for the services this interceptor covers; other handlers
        unchanged.
        """
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        if not handler_call_details.method.startswith(self._prefixes):
            return handler
        cached = self._wrapped.get(id(handler))
        if cached is not None and cached[0] is handler:
            wrapped: grpc.RpcMethodHandler[Any, Any] = cached[1]
            return wrapped
        wrapped = self._wrap(handler)
        if len(self._wrapped) >= _WRAPPED_CACHE_SIZE:
            self._wrapped.clear()
        self._wrapped[id(handler)] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        assert handler.request_deserializer is not None
        decode = lenient(handler.request_deserializer)
        encode = handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary_request(handler.unary_unary), decode, encode
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_unary_stream(handler.unary_stream), decode, encode
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_stream_unary(handler.stream_unary), decode, encode
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream_stream(handler.stream_stream), decode, encode
            )
        return handler
