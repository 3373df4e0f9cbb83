"""Domain errors to call status, in one place, for every servicer on both transports.

A servicer method raises the domain's errors (`RequestError` with its status code and
reason code, `BrokerError` when the broker cannot serve); `maps_domain_errors` turns them
into the call's status (`context.abort`), counts them by reason in
`syncwire_request_errors_total`, and puts the reason code and retry hint in the trailing
metadata (`syncwire-reason`, `retry-after-ms`, see docs/protocol.md "Errors").
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
import grpc.aio

from wire.status import REASON_CODE_METADATA_KEY, RETRY_AFTER_METADATA_KEY

from .broker import BrokerError
from .core import SyncCore
from .errors import BROKER_UNAVAILABLE, RequestError, broker_unavailable
from .metrics import ServerMetrics

Context = grpc.aio.ServicerContext[Any, Any]


GRPC_TRANSPORT = "grpc"
"""Transport name of native grpc.aio calls (contexts without a `transport` attribute)."""


def transport_of(context: Context) -> str:
    """The transport a call arrived on: the context's `transport` attribute (the
    WebSocket adapter's contexts say 'websocket'); grpc.aio's own contexts have none and
    are 'grpc'."""
    transport = getattr(context, "transport", GRPC_TRANSPORT)
    return transport if isinstance(transport, str) else GRPC_TRANSPORT


def receive_limit_of(context: Context) -> int | None:
    """The largest response message (bytes) the caller announced it receives: the
    WebSocket adapter's contexts carry it from the handshake (`receive_limit`);
    grpc.aio's have none (None: gRPC does not tell the server)."""
    limit = getattr(context, "receive_limit", None)
    return limit if isinstance(limit, int) else None


def reason_of(error: RequestError | BrokerError) -> str:
    """The stable reason code of a domain error ('broker_unavailable' for the broker)."""
    return error.reason_code if isinstance(error, RequestError) else BROKER_UNAVAILABLE


async def abort_with(context: Context, error: RequestError | BrokerError) -> NoReturn:
    """Ends the call with the error's status: a `RequestError`'s code and message with
    its reason code and retry hint in the trailers (a `BrokerError` as
    `errors.broker_unavailable`: UNAVAILABLE, `broker_unavailable`, retry hint). Raises what `context.abort` raises (grpc.aio.AbortError)."""
    if isinstance(error, BrokerError):
        error = broker_unavailable(error)
    trailers = [(REASON_CODE_METADATA_KEY, error.reason_code)]
    if error.retry_after_ms > 0:
        trailers.append((RETRY_AFTER_METADATA_KEY, str(error.retry_after_ms)))
    await context.abort(error.code, error.message, tuple(trailers))
    raise AssertionError("unreachable")  # abort always raises


@asynccontextmanager
async def domain_errors(metrics: ServerMetrics, context: Context) -> AsyncIterator[None]:
    """Inside the block, a `RequestError` or `BrokerError` ends the call with its status
    (see `abort_with`) after being counted by reason in `metrics.request_errors`."""
    try:
        yield
    except (RequestError, BrokerError) as error:
        metrics.request_errors.labels(reason_of(error)).inc()
        await abort_with(context, error)


class ServesCore(Protocol):
    """A servicer over a `SyncCore` (whose metrics count refusals)."""

    core: SyncCore


SelfT = TypeVar("SelfT", bound=ServesCore)
RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


def maps_domain_errors(
    method: Callable[[SelfT, RequestT, Context], Awaitable[ResponseT]],
) -> Callable[[SelfT, RequestT, Context], Awaitable[ResponseT]]:
    """Decorates a unary servicer method so domain errors it raises become the call's
    status (see `domain_errors`); everything else passes through unchanged."""

    @functools.wraps(method)
    async def mapped(self: SelfT, request: RequestT, context: Context) -> ResponseT:
        async with domain_errors(self.core.metrics, context):
            return await method(self, request, context)
        raise AssertionError("unreachable")  # domain_errors re-raises or aborts

    return mapped
