"""Legacy leptos-sync JSON protocol <-> typed syncwire messages (pure, no I/O).

Inbound (a legacy client's text frame): `decode_client_message` gives a `ClientMessage`
whose `request` is the typed SyncRequest to act on, or raises `LegacyProtocolError`
(answer with `render_error`, keep the connection; `close_code` set means close instead).
Binary frames are opaque: check them with `check_message_size` and answer with a typed
BinaryAck. Outbound: `render_for_legacy` turns each typed SyncResponse into the text frame
a legacy client expects (or None). The shape-specific codecs are exported for tools and
tests; see `../shared/legacy-protocol/README.md` for the protocol itself.
"""

from server.legacy.codec import (
    ClientMessage,
    decode_client_message,
    decode_server_message,
    error_response,
    render_error,
    render_for_legacy,
)
from server.legacy.errors import (
    ErrorCode,
    InvalidUtf8Error,
    LegacyProtocolError,
    UnrepresentableError,
)
from server.legacy.strict_json import MAX_DEPTH, MAX_MESSAGE_BYTES, check_message_size, payload_size
from server.legacy.tagged import encode_request, encode_response
from server.legacy.timefmt import format_rfc3339, parse_rfc3339
from server.legacy.wrapper import encode_envelope, encode_response_wrapper, envelope_to_request

__all__ = [
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "ClientMessage",
    "ErrorCode",
    "InvalidUtf8Error",
    "LegacyProtocolError",
    "UnrepresentableError",
    "check_message_size",
    "decode_client_message",
    "decode_server_message",
    "encode_envelope",
    "encode_request",
    "encode_response",
    "encode_response_wrapper",
    "envelope_to_request",
    "error_response",
    "format_rfc3339",
    "parse_rfc3339",
    "payload_size",
    "render_error",
    "render_for_legacy",
]
