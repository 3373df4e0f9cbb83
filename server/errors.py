"""Typed request errors: each carries its gRPC status code and a stable reason code."""

from __future__ import annotations

import re

import grpc

from syncwire.v1 import sync_pb2

from .clock import now_timestamp

MAX_COLLECTION_ID_BYTES = 256
# One regex scan instead of a per-character Python loop: this runs on every publish.
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")


class RequestError(Exception):
    """A request failed; on the sync stream it becomes an `Error` reply, on unary calls
    the call's status."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason_code: str,
        message: str,
        *,
        collection_id: str = "",
        retry_after_ms: int = 0,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason_code = reason_code
        self.message = message
        self.collection_id = collection_id
        self.retry_after_ms = retry_after_ms

    def to_response(self) -> sync_pb2.SyncResponse:
        """The error as the Sync stream's `Error` reply (code number, message, reason code,
        collection id, retry_after_ms, timestamp); the caller sets the request id.
        """
        return sync_pb2.SyncResponse(
            error=sync_pb2.Error(
                code=self.code.value[0],
                message=self.message,
                collection_id=self.collection_id,
                retry_after_ms=self.retry_after_ms,
                reason_code=self.reason_code,
                timestamp=now_timestamp(),
            )
        )


BROKER_UNAVAILABLE = "broker_unavailable"
"""Reason code of every refusal caused by the broker (e.g. Redis unreachable)."""


def broker_unavailable(error: Exception) -> RequestError:
    """The refusal a request gets when the broker failed with `error` (a BrokerError):
    UNAVAILABLE, reason `broker_unavailable`, "broker unavailable: ...", and the
    broker's retry hint (`retry_after_ms`, default 1000)."""
    return RequestError(
        grpc.StatusCode.UNAVAILABLE,
        BROKER_UNAVAILABLE,
        f"broker unavailable: {error}",
        retry_after_ms=int(getattr(error, "retry_after_ms", 1000)),
    )


def validate_collection_id(collection_id: str) -> None:
    """Collection ids are non-empty UTF-8 strings of at most 256 bytes, no control chars."""
    if not collection_id:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT, "invalid_collection", "collection_id is empty"
        )
    if len(collection_id.encode("utf-8", "surrogatepass")) > MAX_COLLECTION_ID_BYTES:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_collection",
            f"collection_id is longer than {MAX_COLLECTION_ID_BYTES} bytes",
        )
    if _CONTROL_CHARS.search(collection_id):
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_collection",
            "collection_id contains control characters",
        )
