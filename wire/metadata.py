"""Metadata (headers and trailers) as MetadataEntry lists and back, validated like gRPC.

Keys are lower-case ``[0-9a-z_.-]+``. Keys ending in ``-bin`` carry raw bytes; every other
value is printable ASCII (0x20-0x7E) text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import grpc.aio

from syncwire.ws.v1 import frame_pb2

MetadataValue = str | bytes
MetadataPairs = Iterable[tuple[str, MetadataValue]]

_KEY = re.compile(r"[0-9a-z_.\-]+")
_PRINTABLE_ASCII = re.compile(rb"[\x20-\x7e]*")


class MetadataError(ValueError):
    """A metadata key or value that gRPC would not carry."""


def is_binary_key(key: str) -> bool:
    """Whether a key carries raw bytes (the ``-bin`` suffix)."""
    return key.endswith("-bin")


def _check_key(key: str) -> None:
    if not _KEY.fullmatch(key):
        raise MetadataError(f"invalid metadata key {key!r}: use lower-case [0-9a-z_.-]")


def _text_bytes(key: str, raw: bytes) -> bytes:
    if not _PRINTABLE_ASCII.fullmatch(raw):
        raise MetadataError(f"metadata value of {key!r} is not printable ASCII")
    return raw


def encode_entry(key: str, value: MetadataValue) -> frame_pb2.MetadataEntry:
    """One validated entry; text values are sent as their ASCII bytes."""
    _check_key(key)
    if is_binary_key(key):
        raw = value.encode() if isinstance(value, str) else bytes(value)
    elif isinstance(value, str):
        if not value.isascii():
            raise MetadataError(f"metadata value of {key!r} is not printable ASCII")
        raw = _text_bytes(key, value.encode("ascii"))
    else:
        raw = _text_bytes(key, bytes(value))
    return frame_pb2.MetadataEntry(key=key, value=raw)


def encode_metadata(metadata: MetadataPairs | None) -> list[frame_pb2.MetadataEntry]:
    """Validated entries for a frame, in order; duplicate keys are kept."""
    if metadata is None:
        return []
    return [encode_entry(key, value) for key, value in metadata]


def decode_metadata(entries: Iterable[frame_pb2.MetadataEntry]) -> grpc.aio.Metadata:
    """Received entries as grpc.aio Metadata: bytes for ``-bin`` keys, str otherwise."""
    result = grpc.aio.Metadata()
    for entry in entries:
        _check_key(entry.key)
        if is_binary_key(entry.key):
            result.add(entry.key, entry.value)
        else:
            result.add(entry.key, _text_bytes(entry.key, entry.value).decode("ascii"))
    return result
