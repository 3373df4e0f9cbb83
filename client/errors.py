"""Typed errors of the sync client; each carries the gRPC status code it stands for.

Applications catch `SyncError` for everything the client raises, or one of the
subclasses when they care why (a request the server refused, a full outbox, a closed
client, a connection that is not there).
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

from syncwire.v1 import sync_pb2
from wire.status import REASON_CODE_METADATA_KEY, number_to_code


class SyncError(Exception):
    """Base of every client error.

    Attributes:
        code: The gRPC status code of the failure.
        reason_code: Machine-readable reason (server reason codes such as
            "rate_limited", or a client one such as "outbox_full").
        retry_after: Seconds to wait before retrying, when the server said so.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason_code: str = "",
        retry_after: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason_code = reason_code
        self.retry_after = retry_after

    def __str__(self) -> str:
        reason = f" [{self.reason_code}]" if self.reason_code else ""
        return f"{self.code.name}{reason}: {self.message}"


class RequestFailed(SyncError):
    """The server answered a request (subscribe, publish, ...) with an Error."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason_code: str = "",
        retry_after: float = 0.0,
        collection_id: str = "",
    ) -> None:
        super().__init__(code, message, reason_code=reason_code, retry_after=retry_after)
        self.collection_id = collection_id

    @classmethod
    def from_proto(cls, error: sync_pb2.Error) -> RequestFailed:
        """The RequestFailed for a server `Error` reply (code number, message, reason code,
        retry_after_ms -> seconds, collection id).
        """
        return cls(
            number_to_code(error.code),
            error.message,
            reason_code=error.reason_code,
            retry_after=error.retry_after_ms / 1000,
            collection_id=error.collection_id,
        )

    @property
    def retryable(self) -> bool:
        """True when the same request may succeed later (the server gave a delay)."""
        return self.retry_after > 0 or self.code in _RETRYABLE


_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})


class SendBufferFullError(SyncError):
    """More than `ClientConfig.send_buffer_bytes` of requests wait to be sent on the
    connection: the server is not reading them (it stops reading a client that leaves
    its replies unread, or the network stalls). Retry after reading events, or later."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"more than {limit} bytes of requests wait to be sent to the server; try again later",
            reason_code="send_buffer_full",
            retry_after=1.0,
        )


class MessageTooLargeError(RequestFailed):
    """A delta is larger than the server's advertised message limit. Refused before
    sending: an oversize message would end the whole stream, again on every retry."""

    def __init__(self, size: int, limit: int, collection_id: str) -> None:
        super().__init__(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"publish of about {size} bytes exceeds the server's {limit}-byte message limit",
            reason_code="message_too_large",
            collection_id=collection_id,
        )
        self.size = size
        self.limit = limit


class ConnectionLost(SyncError):
    """The connection to the server failed or ended; the client reconnects by itself."""


class HeartbeatTimeout(ConnectionLost):
    """Nothing arrived from the server within the liveness bound (a half-open
    connection); the client drops the connection and reconnects."""

    def __init__(self, silence: float) -> None:
        super().__init__(
            grpc.StatusCode.UNAVAILABLE,
            f"no message from the server for {silence:.1f} s",
            reason_code="heartbeat_timeout",
        )
        self.silence = silence


class ServerDisconnected(ConnectionLost):
    """The server announced the end of the stream (a `Disconnect` message)."""

    def __init__(self, disconnect: sync_pb2.Disconnect) -> None:
        super().__init__(
            number_to_code(disconnect.code),
            disconnect.reason or "server ended the stream",
            reason_code="server_disconnect",
        )
        self.reconnect = disconnect.reconnect


class SwitchingEndpoint(ConnectionLost):
    """The client leaves a fallback endpoint because a preferred one answers again."""

    def __init__(self, url: str) -> None:
        super().__init__(
            grpc.StatusCode.CANCELLED,
            f"moving to preferred endpoint {url}",
            reason_code="switching_endpoint",
        )
        self.url = url


class TokenRefusedError(SyncError):
    """The server refused the token provider's token twice in a row (at connect, at a
    reconnect or in an in-band refresh): the client stops reconnecting and goes
    OFFLINE with this error (`reconnect()` starts again, asking the provider anew).

    Attributes:
        refusal: The server's last refusal (UNAUTHENTICATED, with its reason code such
            as "token_expired" or "invalid_token").
    """

    def __init__(self, refusal: SyncError) -> None:
        super().__init__(
            grpc.StatusCode.UNAUTHENTICATED,
            f"the server refused the token provider's token twice: {refusal.message}",
            reason_code=refusal.reason_code or "token_refused",
        )
        self.refusal = refusal


class NotConnectedError(SyncError):
    """The operation needs a live connection and there is none right now."""

    def __init__(self, what: str) -> None:
        super().__init__(
            grpc.StatusCode.UNAVAILABLE, f"{what} needs a connection", reason_code="not_connected"
        )


class ServerUnreachableError(SyncError):
    """The client's first connection did not come up within the first-connect timeout
    (`ClientConfig.first_connect_timeout`); raised by `SyncClient.connect()`.

    Attributes:
        endpoints: The URLs tried, in order of preference.
        timeout: Seconds waited.
        last_error: The last connection failure seen (None if no attempt finished).
    """

    def __init__(self, endpoints: list[str], timeout: float, last_error: SyncError | None) -> None:
        why = f": {last_error.message}" if last_error is not None else ""
        super().__init__(
            grpc.StatusCode.UNAVAILABLE,
            f"cannot reach {', '.join(endpoints)} within {timeout:g} s{why}",
            reason_code="server_unreachable",
        )
        self.endpoints = endpoints
        self.timeout = timeout
        self.last_error = last_error


class NotSubscribedError(SyncError):
    """The operation needs a subscription to the collection first."""

    def __init__(self, collection_id: str) -> None:
        super().__init__(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"not subscribed to {collection_id!r}",
            reason_code="not_subscribed",
        )
        self.collection_id = collection_id


class OutboxFullError(SyncError):
    """The outbox holds its maximum number of unacknowledged publishes."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"outbox is full ({limit} unacknowledged publishes); wait for the connection "
            "to flush it or raise outbox_limit",
            reason_code="outbox_full",
        )
        self.limit = limit


class ClientClosedError(SyncError):
    """The client is closed (or closed before the operation completed)."""

    def __init__(self, message: str = "the client is closed") -> None:
        super().__init__(grpc.StatusCode.CANCELLED, message, reason_code="client_closed")


def from_rpc_error(error: grpc.aio.AioRpcError, *, what: str = "call") -> SyncError:
    """A SyncError (ConnectionLost for transport failures) for a failed gRPC call, with
    the server's reason code from the `syncwire-reason` trailer when it sent one."""
    code = error.code()
    message = f"{what} failed: {error.details() or code.name}"
    reason = trailer(error, REASON_CODE_METADATA_KEY)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return ConnectionLost(code, message, reason_code=reason)
    return SyncError(code, message, reason_code=reason)


def trailer(error: grpc.aio.AioRpcError, key: str) -> str:
    """The value of the call's trailing metadata `key` ("" when absent)."""
    # grpc.aio returns a grpc.aio.Metadata (pairs); grpc-stubs types it as _Metadatum.
    trailers: Any = error.trailing_metadata() or ()
    for name, value in trailers:
        if name == key:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return ""


FATAL_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
"""Stream-level statuses that reconnecting cannot fix: the client goes OFFLINE."""
