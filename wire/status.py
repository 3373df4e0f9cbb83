"""gRPC status codes as the numbers the frames carry, and back."""

from __future__ import annotations

import grpc

_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def code_to_number(code: grpc.StatusCode) -> int:
    """The wire number of a status code (OK = 0, CANCELLED = 1, ...)."""
    number: int = code.value[0]
    return number


def as_status_code(code: object) -> grpc.StatusCode:
    """A status code given as grpc.StatusCode or as its number (grpc.aio's
    ``context.abort``/``set_code`` accept both); anything else reads as UNKNOWN, as in
    grpc.aio's ``get_status_code``."""
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int) and not isinstance(code, bool):
        return _BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.UNKNOWN


def number_to_code(number: int) -> grpc.StatusCode:
    """The status code for a wire number; numbers gRPC does not define read as UNKNOWN."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


# Trailing metadata with which a server explains a failed unary call (or a Sync stream
# refused at its start), mirroring the sync stream's `Error.reason_code` and
# `Error.retry_after_ms`.
REASON_CODE_METADATA_KEY = "syncwire-reason"
RETRY_AFTER_METADATA_KEY = "retry-after-ms"
