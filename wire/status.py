"""gRPC status codes as the numbers the frames carry, and back."""

from __future__ import annotations

import grpc

_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def code_to_number(code: grpc.StatusCode) -> int:
    """The wire number of a status code (OK = 0, CANCELLED = 1, ...)."""
    number: int = code.value[0]
    return number


def number_to_code(number: int) -> grpc.StatusCode:
    """The status code for a wire number; numbers gRPC does not define read as UNKNOWN."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


# Trailing metadata with which a server explains a failed unary call (or a Sync stream
# refused at its start), mirroring the sync stream's `Error.reason_code` and
# `Error.retry_after_ms`.
REASON_CODE_METADATA_KEY = "syncwire-reason"
RETRY_AFTER_METADATA_KEY = "retry-after-ms"
