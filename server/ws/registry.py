"""Method lookup: what the generated ``add_*Servicer_to_server`` registered, behind any
grpc.aio server interceptors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
import grpc.aio

from wire.metadata import InvocationMetadata

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # grpc classes are generic only in stubs


@dataclass(frozen=True, slots=True)
class CallDetails(grpc.HandlerCallDetails):
    """grpc.HandlerCallDetails for a call that arrived over WebSocket."""

    method: str
    invocation_metadata: InvocationMetadata


class MethodRegistry:
    """Registered method handlers, generic handlers and interceptors, looked up like
    grpc.aio: registered methods first, then generic handlers in registration order."""

    def __init__(self, interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = ()) -> None:
        self._generic: list[grpc.GenericRpcHandler[Any, Any]] = []
        self._registered: dict[str, Handler] = {}
        self._services: dict[str, None] = {}  # registered service names, in order
        self._interceptors = tuple(interceptors)
        # The interceptor chain is the same for every call: built once, on first use.
        self._chain: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]] | None = None

    def add_generic(self, handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]) -> None:
        """Adds generic handlers (what add_generic_rpc_handlers receives)."""
        self._generic.extend(handlers)

    def add_registered(self, service: str, handlers: Mapping[str, Handler]) -> None:
        """Adds one service's method handlers by name."""
        self._services[service] = None
        for name, handler in handlers.items():
            self._registered[f"/{service}/{name}"] = handler

    def service_names(self) -> list[str]:
        """Full names of the services registered by name (as generated
        ``add_*Servicer_to_server`` code does), in registration order."""
        return list(self._services)

    def _lookup(self, details: grpc.HandlerCallDetails) -> Handler | None:
        registered = self._registered.get(details.method)
        if registered is not None:
            return registered
        for generic in self._generic:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None

    async def find(self, method: str, metadata: InvocationMetadata) -> Handler | None:
        """The handler for a method path, after the interceptors had their say."""
        details = CallDetails(method, metadata)
        if not self._interceptors:
            return self._lookup(details)
        chain = self._chain
        if chain is None:

            async def innermost(call_details: grpc.HandlerCallDetails) -> Handler | None:
                return self._lookup(call_details)

            chain = innermost
            for interceptor in reversed(self._interceptors):
                chain = _chain(interceptor, chain)
            self._chain = chain
        return await chain(details)


def _chain(
    interceptor: grpc.aio.ServerInterceptor[Any, Any],
    continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
) -> Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]:
    async def step(details: grpc.HandlerCallDetails) -> Handler | None:
        handler: Handler | None = await interceptor.intercept_service(continuation, details)  # type: ignore[arg-type]
        return handler

    return step
