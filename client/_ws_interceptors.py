"""Client interceptors on a multiplexed channel, run exactly as grpc.aio runs them.

grpc.aio wraps an intercepted call in `Intercepted*Call` (grpc/aio/_interceptor.py):
it builds `ClientCallDetails(method, timeout, metadata, credentials, wait_for_ready)`,
hands each interceptor a continuation to the next, wraps plain responses and response
iterators an interceptor returns, and proxies the call interface. Those classes are
reused here unchanged; only the innermost step, which grpc.aio points at its native
channel, is replaced by starting the call on the multiplexed channel. So interceptors
see the same details (the method as bytes, metadata as `grpc.aio.Metadata`) and may
return the same things as on `grpc.aio.insecure_channel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc.aio
from grpc.aio import _interceptor as aio_interceptor

if TYPE_CHECKING:
    from client._ws_calls import Deserializer, Serializer
    from client._ws_channel_base import MultiplexedChannel

ClientInterceptor: TypeAlias = (
    "grpc.aio.UnaryUnaryClientInterceptor[Any, Any]"
    " | grpc.aio.UnaryStreamClientInterceptor[Any, Any]"
    " | grpc.aio.StreamUnaryClientInterceptor[Any, Any]"
    " | grpc.aio.StreamStreamClientInterceptor[Any, Any]"
)
"""Any of grpc.aio's four client interceptor kinds (generic in grpc-stubs only)."""


class Interceptors:
    """A channel's interceptors sorted by call kind, as grpc.aio.Channel sorts them
    (ValueError for anything else, with grpc.aio's message)."""

    def __init__(self, interceptors: Sequence[Any] | None) -> None:
        self.unary_unary: list[grpc.aio.UnaryUnaryClientInterceptor[Any, Any]] = []
        self.unary_stream: list[grpc.aio.UnaryStreamClientInterceptor[Any, Any]] = []
        self.stream_unary: list[grpc.aio.StreamUnaryClientInterceptor[Any, Any]] = []
        self.stream_stream: list[grpc.aio.StreamStreamClientInterceptor[Any, Any]] = []
        for interceptor in interceptors or ():
            if isinstance(interceptor, grpc.aio.UnaryUnaryClientInterceptor):
                self.unary_unary.append(interceptor)
            elif isinstance(interceptor, grpc.aio.UnaryStreamClientInterceptor):
                self.unary_stream.append(interceptor)
            elif isinstance(interceptor, grpc.aio.StreamUnaryClientInterceptor):
                self.stream_unary.append(interceptor)
            elif isinstance(interceptor, grpc.aio.StreamStreamClientInterceptor):
                self.stream_stream.append(interceptor)
            else:
                raise ValueError(
                    f"Interceptor {interceptor} must be UnaryUnaryClientInterceptor or "
                    "UnaryStreamClientInterceptor or StreamUnaryClientInterceptor or "
                    "StreamStreamClientInterceptor. "
                )

    def of_kind(self, kind: str) -> list[Any]:
        """The interceptors of "unary_unary", "unary_stream", ... calls."""
        interceptors: list[Any] = getattr(self, kind)
        return interceptors


class _Innermost:
    """Mixed in before a grpc.aio `Intercepted*Call`: grpc.aio's step runs the next
    interceptor (its continuation comes back here); after the last one, the real call
    starts on the multiplexed channel (`self._channel`) instead of grpc's native one."""

    _kind: str
    _channel: Any
    _last_returned_call_from_interceptors: Any

    async def _run_interceptor(
        self,
        interceptors: list[Any],
        method: bytes,
        request_serializer: Serializer,
        response_deserializer: Deserializer,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        if interceptors:
            return await super()._run_interceptor(  # type: ignore[misc]
                interceptors,
                method,
                request_serializer,
                response_deserializer,
                client_call_details,
                request,
            )
        details = client_call_details
        name = details.method
        channel: MultiplexedChannel = self._channel
        call = channel._start_call(
            self._kind,
            name.decode() if isinstance(name, bytes) else name,
            request_serializer,
            response_deserializer,
            request,
            details.timeout,
            details.metadata,
            details.credentials,
            details.wait_for_ready,
        )
        if self._kind.endswith("_stream"):  # grpc.aio remembers the innermost stream call
            self._last_returned_call_from_interceptors = call
        return call


class InterceptedUnaryUnaryCall(_Innermost, aio_interceptor.InterceptedUnaryUnaryCall):  # type: ignore[misc]
    _kind = "unary_unary"


class InterceptedUnaryStreamCall(_Innermost, aio_interceptor.InterceptedUnaryStreamCall):  # type: ignore[misc]
    _kind = "unary_stream"


class InterceptedStreamUnaryCall(_Innermost, aio_interceptor.InterceptedStreamUnaryCall):  # type: ignore[misc]
    _kind = "stream_unary"


class InterceptedStreamStreamCall(_Innermost, aio_interceptor.InterceptedStreamStreamCall):  # type: ignore[misc]
    _kind = "stream_stream"


INTERCEPTED_CALLS: dict[str, type[Any]] = {
    "unary_unary": InterceptedUnaryUnaryCall,
    "unary_stream": InterceptedUnaryStreamCall,
    "stream_unary": InterceptedStreamUnaryCall,
    "stream_stream": InterceptedStreamStreamCall,
}
