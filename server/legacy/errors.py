"""Typed errors of the legacy JSON translator.

`LegacyProtocolError` is what bad client input becomes: its `code` is one of the legacy
`error` codes (README section 6), so the session can answer with `render_error` and keep
the connection. `InvalidUtf8Error` is the one input that must end the connection instead
(RFC 6455: a text frame that is not UTF-8 fails the connection with close code 1007).
`UnrepresentableError` is raised by the strict encoders when a typed message has no legacy
form (for example a non-UUID replica id in the wrapper shape); it is a programming or
routing error, never a client's fault.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

ErrorCode = Literal[
    "invalid_json",
    "invalid_message",
    "unknown_type",
    "unsupported_version",
    "message_too_large",
]
"""The legacy `error.code` values."""

ERROR_CODES: Final[frozenset[str]] = frozenset(get_args(ErrorCode))

# gRPC status numbers (google.rpc.Code) the typed `Error.code` carries for each legacy code.
INVALID_ARGUMENT: Final = 3
RESOURCE_EXHAUSTED: Final = 8
GRPC_CODE_BY_ERROR_CODE: Final[dict[str, int]] = {
    "invalid_json": INVALID_ARGUMENT,
    "invalid_message": INVALID_ARGUMENT,
    "unknown_type": INVALID_ARGUMENT,
    "unsupported_version": INVALID_ARGUMENT,
    "message_too_large": RESOURCE_EXHAUSTED,
}

CLOSE_INVALID_PAYLOAD: Final = 1007
"""WebSocket close code for a text frame that is not valid UTF-8 (RFC 6455 7.4.1)."""


class LegacyProtocolError(Exception):
    """A legacy message was rejected; the sender gets an `error` and the connection stays.

    `message_id` is the wrapper's string `message_id` when the bad input was a wrapper that
    carried one, so the client can match the error to what it sent.
    """

    close_code: int | None = None
    """WebSocket close code the session must use instead of answering, or None to answer."""

    def __init__(self, code: ErrorCode, reason: str, message_id: str | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code: ErrorCode = code
        self.reason = reason
        self.message_id = message_id

    @property
    def grpc_code(self) -> int:
        """The gRPC status number matching `code` (3 INVALID_ARGUMENT, 8 RESOURCE_EXHAUSTED)."""
        return GRPC_CODE_BY_ERROR_CODE[self.code]

    def with_message_id(self, message_id: str | None) -> LegacyProtocolError:
        """The same error, attributed to a wrapper's `message_id` (keeps the subclass)."""
        if message_id is None or self.message_id is not None:
            return self
        clone = type(self).__new__(type(self))
        LegacyProtocolError.__init__(clone, self.code, self.reason, message_id)
        return clone

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r}, "
            f"message_id={self.message_id!r})"
        )


class InvalidUtf8Error(LegacyProtocolError):
    """A text frame whose bytes are not UTF-8: fatal, the session closes with 1007."""

    close_code = CLOSE_INVALID_PAYLOAD

    def __init__(self, reason: str) -> None:
        super().__init__("invalid_json", reason)


class UnrepresentableError(ValueError):
    """A typed message that the requested legacy shape cannot express."""


def invalid_message(reason: str) -> LegacyProtocolError:
    """Shorthand for the most common rejection."""
    return LegacyProtocolError("invalid_message", reason)
