"""What a legacy connection's opening request decides: its home collection.

The old server ignored path and query; syncwire accepts any path too, and reads one
thing from the query: `room_id`, documented in the old OpenAPI file, picks the home
collection (README section 7). Everything else in the URL is ignored.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qs, urlsplit

ROOM_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,50}")
ROOM_ID_RULE: Final = "^[A-Za-z0-9_-]{1,50}$"


class InvalidRoomError(ValueError):
    """The `room_id` query parameter is present but not a valid room id."""


def home_collection(path: str, default: str) -> str:
    """The collection a legacy connection joins: `room_id` if given, else `default`.

    `path` is the request target (path and optional query). Raises `InvalidRoomError`
    when `room_id` is given but empty, repeated or not `ROOM_ID_RULE`.
    """
    query = urlsplit(path).query
    values = parse_qs(query, keep_blank_values=True).get("room_id")
    if values is None:
        return default
    if len(values) != 1:
        raise InvalidRoomError("room_id is given more than once")
    room_id = values[0]
    if ROOM_ID_PATTERN.fullmatch(room_id) is None:
        raise InvalidRoomError(f"room_id must match {ROOM_ID_RULE}")
    return room_id


def close_reason(text: str) -> str:
    """`text` cut to fit a close frame (123 UTF-8 bytes), on a character boundary."""
    encoded = text.encode("utf-8")
    if len(encoded) <= 123:
        return text
    return encoded[:120].decode("utf-8", "ignore") + "..."
