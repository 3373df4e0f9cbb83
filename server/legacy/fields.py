"""Readers for the fields of a parsed legacy message, with serde's strictness.

Every reader either returns the value in its typed form or raises `invalid_message` with
a reason naming the field, so a decoder reads like the legacy struct it mirrors.
`where` is the dotted path shown in reasons (for example `Delta.replica_id`).
"""

from __future__ import annotations

import re
import uuid
from typing import Final

import orjson

from server.legacy.errors import invalid_message

JsonObject = dict[str, object]

U32_MAX: Final = 2**32 - 1
U64_MAX: Final = 2**64 - 1

_HEX_UUID: Final = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Exactly the forms the Rust `Uuid::parse_str` accepts: simple, hyphenated, braced, URN.
_UUID_FORMS: Final = re.compile(
    rf"{_HEX_UUID}|[0-9a-fA-F]{{32}}|\{{{_HEX_UUID}\}}|urn:uuid:{_HEX_UUID}"
)
_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def require(obj: JsonObject, key: str, where: str) -> object:
    """The value of a required key (JSON `null` counts as present)."""
    try:
        return obj[key]
    except KeyError:
        raise invalid_message(f"{where}: missing field `{key}`") from None


def as_object(value: object, where: str) -> JsonObject:
    """A JSON object."""
    if not isinstance(value, dict):
        raise invalid_message(f"{where} must be an object")
    return value


def as_str(value: object, where: str) -> str:
    """A JSON string."""
    if not isinstance(value, str):
        raise invalid_message(f"{where} must be a string")
    return value


def optional_str(obj: JsonObject, key: str, where: str) -> str | None:
    """serde `Option<String>`: a missing key or `null` is None."""
    value = obj.get(key)
    return None if value is None else as_str(value, f"{where}.{key}")


def as_uint(value: object, where: str, maximum: int = U64_MAX) -> int:
    """A non-negative integer no larger than `maximum` (`1.0`, `"1"`, `true` are refused)."""
    if type(value) is not int or not 0 <= value <= maximum:
        raise invalid_message(f"{where} must be an integer from 0 to {maximum}")
    return value


def as_bytes(value: object, where: str) -> bytes:
    """serde `Vec<u8>`: an array of integers 0..=255 (a string is refused)."""
    if not isinstance(value, list):
        raise invalid_message(f"{where} must be an array of integers 0..255")
    # bytes() checks range and int-ness in C, but takes true/false as 1/0: only a result
    # holding a 0 or 1 byte can hide a bool, and re-serializing (C speed, no per-item
    # Python call) shows one as "true"/"false", the only JSON values here with an "e".
    try:
        data = bytes(value)
    except (TypeError, ValueError):
        raise invalid_message(f"{where} must be an array of integers 0..255") from None
    if (b"\x00" in data or b"\x01" in data) and b"e" in orjson.dumps(value):
        raise invalid_message(f"{where} must be an array of integers 0..255")
    return data


def as_uuid(value: object, where: str) -> str:
    """A UUID in any form `Uuid::parse_str` accepts, as lowercase hyphenated text."""
    text = as_str(value, where)
    canonical = canonical_uuid(text)
    if canonical is None:
        raise invalid_message(f"{where} must be a UUID, got {text[:64]!r}")
    return canonical


def canonical_uuid(text: str) -> str | None:
    """Lowercase hyphenated form of a UUID string, or None if `text` is not one.

    The accepted spellings are exactly those of the Rust `Uuid::parse_str` (hyphenated,
    32 hex digits, `{hyphenated}`, `urn:uuid:hyphenated`, any hex case); Python's
    `uuid.UUID` alone would also take `+`, `_` and stray hyphens.
    """
    if _CANONICAL_UUID.fullmatch(text):
        return text
    if not _UUID_FORMS.fullmatch(text):
        return None
    return str(uuid.UUID(text))
