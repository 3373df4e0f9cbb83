"""Strict JSON in and out, with the legacy server's limits, exact numbers and orjson speed.

The old server parsed with serde_json, so syncwire rejects what serde_json rejects: syntax
errors, empty or truncated input, `NaN`/`Infinity`, numbers beyond double range, lone
surrogate escapes and nesting deeper than 127 levels. orjson already rejects all of these
except the depth (it allows 1024), so the depth is checked here. orjson also reads integers
beyond 64 bits as doubles; the rare payload that might contain one is re-read with the
standard library, which keeps every integer exact (see `exact_value_bytes`).
"""

from __future__ import annotations

import json
from typing import Final

import orjson

from server.legacy.errors import InvalidUtf8Error, LegacyProtocolError

MAX_MESSAGE_BYTES: Final = 1_048_576
"""Largest legacy message accepted, in UTF-8 bytes (text) or bytes (binary); inclusive."""

MAX_DEPTH: Final = 127
"""Deepest nesting of arrays/objects serde_json accepts (its recursion limit is 128)."""

_MAX_UTF8_BYTES_PER_CHAR: Final = 4

Payload = str | bytes
"""A frame's content: `str` for a decoded text frame, `bytes` for raw frame bytes."""


def payload_size(payload: Payload) -> int:
    """Length of a frame in bytes as the limit counts them (UTF-8 for text)."""
    if isinstance(payload, bytes):
        return len(payload)
    if payload.isascii():
        return len(payload)
    # surrogatepass: a str built in Python may hold lone surrogates; count, don't fail.
    return len(payload.encode("utf-8", "surrogatepass"))


def check_message_size(payload: Payload, limit: int = MAX_MESSAGE_BYTES) -> int:
    """Return the frame's byte size, or raise `message_too_large` when it is over `limit`."""
    if isinstance(payload, str):
        # Cheap bounds first: every character is 1 to 4 UTF-8 bytes.
        if len(payload) > limit:
            raise _too_large(limit)
        if len(payload) * _MAX_UTF8_BYTES_PER_CHAR <= limit:
            return payload_size(payload)
    size = payload_size(payload)
    if size > limit:
        raise _too_large(limit, size)
    return size


def _too_large(limit: int, size: int | None = None) -> LegacyProtocolError:
    shown = "more than" if size is None else f"{size} bytes,"
    return LegacyProtocolError(
        "message_too_large", f"message is {shown} over the limit of {limit} bytes"
    )


def parse_strict(payload: Payload) -> object:
    """Parse one frame as strict JSON (RFC 8259 plus serde_json's limits).

    Raises `InvalidUtf8Error` for bytes that are not UTF-8 and `invalid_json` for the rest.
    """
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        if isinstance(payload, bytes):
            _require_utf8(payload)
        raise LegacyProtocolError("invalid_json", str(exc)) from None
    if exceeds_depth(value, payload, MAX_DEPTH):
        raise LegacyProtocolError("invalid_json", f"nesting is deeper than {MAX_DEPTH} levels")
    return value


def _require_utf8(payload: bytes) -> None:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUtf8Error(
            f"text frame is not valid UTF-8: {exc.reason} at byte {exc.start}"
        ) from None


def exceeds_depth(value: object, text: Payload, limit: int) -> bool:
    """Whether `value` (parsed from `text`) nests arrays/objects more than `limit` deep.

    Counting brackets in the raw text is a C-speed upper bound that settles almost every
    message; only a payload with more than `limit` brackets is walked, without recursion.
    """
    if isinstance(text, bytes):
        brackets = text.count(b"[") + text.count(b"{")
    else:
        brackets = text.count("[") + text.count("{")
    if brackets <= limit:
        return False
    stack: list[tuple[dict[str, object] | list[object], int]] = []
    if isinstance(value, dict | list):
        stack.append((value, 1))
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def exact_value_bytes(value: object, payload: Payload, key: str) -> bytes:
    """Compact JSON for `value`, the member `key` of the object `payload` holds, unrounded.

    orjson writes every float of magnitude 1e16 or more with an exponent (`e+`), and the
    only values it may have rounded are integers beyond 64 bits, which it read as such
    floats. So when the fast output has no `e+`, it is exact; otherwise the member is
    re-read and re-written by the standard library, whose integers are unbounded. The
    payload has already passed `parse_strict`, so the standard library sees strict JSON
    no deeper than `MAX_DEPTH`.
    """
    fast = orjson.dumps(value)
    if b"e+" not in fast:
        return fast
    text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    exact = json.loads(text)[key]
    return json.dumps(exact, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
        "utf-8"
    )


def is_strict_json(data: bytes, max_depth: int) -> bool:
    """Whether `data` is one strict JSON value nested at most `max_depth` deep.

    Used before embedding JSON bytes verbatim (orjson.Fragment) into an outbound message.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return not exceeds_depth(value, data, max_depth)
