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


class ByteBudget:
    """Entries taken into one answer against `budget` bytes (`field_bytes` each); the
    first is always taken, whatever its size (one stored message is bounded by the
    publish limit already), so a reader makes progress."""

    def __init__(self, budget: int) -> None:
        self.left = budget
        self.taken = 0

    def take(self, message: Message) -> bool:
        """Whether `message` still fits (then it is counted)."""
        size = field_bytes(message)
        if self.taken and size > self.left:
            return False
        self.left -= size
        self.taken += 1
        return True


def within_bytes(messages: Iterable[M], budget: int) -> tuple[list[M], bool]:
    """The leading `messages` that fit in `budget` bytes (`ByteBudget`), and whether any
    was left out."""
    bytes_left = ByteBudget(budget)
    kept: list[M] = []
    for message in messages:
        if not bytes_left.take(message):
            return kept, True
        kept.append(message)
    return kept, False
