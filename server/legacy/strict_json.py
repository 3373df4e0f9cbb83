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
        return loads_limited(payload, MAX_DEPTH)
    except _TooDeepError:
        raise LegacyProtocolError(
            "invalid_json", f"nesting is deeper than {MAX_DEPTH} levels"
        ) from None
    except orjson.JSONDecodeError as exc:
        if isinstance(payload, bytes):
            _require_utf8(payload)
        raise LegacyProtocolError("invalid_json", str(exc)) from None


def _require_utf8(payload: bytes) -> None:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidUtf8Error(
            f"text frame is not valid UTF-8: {exc.reason} at byte {exc.start}"
        ) from None


class _TooDeepError(Exception):
    """The JSON is well-formed but nests deeper than allowed."""


def _probe_orjson_depth_limit() -> int | None:
    """orjson's fixed nesting limit (1024 in every release so far), or None if unknown."""
    limit = 1024
    try:
        orjson.loads(b"[" * limit + b"]" * limit)
    except orjson.JSONDecodeError:
        return None
    try:
        orjson.loads(b"[" * (limit + 1) + b"]" * (limit + 1))
    except orjson.JSONDecodeError:
        return limit
    return None


_ORJSON_DEPTH_LIMIT: Final = _probe_orjson_depth_limit()


def loads_limited(payload: Payload, max_depth: int) -> object:
    """orjson.loads that also refuses nesting deeper than `max_depth`.

    Raises orjson.JSONDecodeError for malformed JSON and `_TooDeepError` for deep JSON.
    Counting brackets is a C-speed upper bound on the depth that settles most messages.
    Beyond it, the payload is parsed inside `orjson_limit - max_depth` extra arrays, so
    orjson's own limit rejects exactly the payloads deeper than `max_depth`, still at C
    speed; the padding is peeled off afterwards.
    """
    if _bracket_count(payload) <= max_depth:
        return orjson.loads(payload)
    if _ORJSON_DEPTH_LIMIT is None:  # an orjson with another limit: walk in Python
        value = orjson.loads(payload)
        if _deeper_than(value, max_depth):
            raise _TooDeepError
        return value
    pad = _ORJSON_DEPTH_LIMIT - max_depth
    try:
        if isinstance(payload, bytes):
            padded = orjson.loads(b"[" * pad + payload + b"]" * pad)
        else:
            padded = orjson.loads("[" * pad + payload + "]" * pad)
    except orjson.JSONDecodeError:
        orjson.loads(payload)  # raises the payload's own syntax error, if it has one
        raise _TooDeepError from None
    for _ in range(pad):
        padded = padded[0]
    return padded


def _bracket_count(text: Payload) -> int:
    if isinstance(text, bytes):
        return text.count(b"[") + text.count(b"{")
    return text.count("[") + text.count("{")


def _deeper_than(value: object, limit: int) -> bool:
    """Walk the parsed value one nesting level at a time (no recursion)."""
    level: list[object] = [value]
    for _ in range(limit + 1):
        below: list[object] = []
        found = False
        for node in level:
            if isinstance(node, dict):
                below.extend(node.values())
                found = True
            elif isinstance(node, list):
                below.extend(node)
                found = True
        if not found:
            return False
        level = below
    return True


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
        loads_limited(data, max_depth)
    except (orjson.JSONDecodeError, _TooDeepError):
        return False
    return True
