"""Byte bounds of responses whose size grows with stored data: a GetHistory slice stops
before it would outgrow what a client can receive (`ServerConfig.response_bytes`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def field_bytes(message: Message) -> int:
    """Bytes `message` takes as one entry of a repeated message field numbered below 16:
    its encoded size, a one-byte tag and the varint of that size."""
    size = message.ByteSize()
    return 1 + max(1, (size.bit_length() + 6) // 7) + size


def within_bytes(messages: Iterable[M], budget: int) -> tuple[list[M], bool]:
    """The leading `messages` whose entries (`field_bytes`) fit in `budget` bytes, and
    whether any was left out. The first message is always kept, whatever its size (one
    stored message is bounded by the publish limit already), so a reader makes progress."""
    kept: list[M] = []
    used = 0
    for message in messages:
        used += field_bytes(message)
        if kept and used > budget:
            return kept, True
        kept.append(message)
    return kept, False
