"""Metadata (headers and trailers) as MetadataEntry lists and back, validated like gRPC.

Keys are lower-case ``[0-9a-z_.-]+``. Keys ending in ``-bin`` carry raw bytes; every other
value is printable ASCII (0x20-0x7E) text.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from typing import NamedTuple, cast

import grpc.aio

from syncwire.ws.v1 import frame_pb2

MetadataValue = str | bytes
MetadataPairs = Iterable[tuple[str, MetadataValue]]
InvocationMetadata = tuple[tuple[str, MetadataValue], ...]
"""Request metadata as grpc.aio servers hand it to handlers: ``(key, value)`` pairs with
``.key`` and ``.value`` attributes, in the order they arrived (repeated keys are not
grouped)."""

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


class _Metadatum(NamedTuple):
    key: str
    value: MetadataValue


def _metadatum_type() -> Callable[[str, MetadataValue], tuple[str, MetadataValue]]:
    """grpc's own ``_Metadatum`` named tuple (what grpc.aio servers return from
    ``invocation_metadata()``), or an equal-shaped one if grpc ever moves it."""
    try:
        found = getattr(importlib.import_module("grpc._cython.cygrpc"), "_Metadatum", None)
    except ImportError:
        found = None
    return cast("Callable[[str, MetadataValue], tuple[str, MetadataValue]]", found or _Metadatum)


metadatum = _metadatum_type()
"""Makes one invocation metadata entry: ``metadatum(key, value)``, a ``(key, value)``
tuple with ``.key`` and ``.value``, of grpc's own type."""


def _decode_value(entry: frame_pb2.MetadataEntry) -> MetadataValue:
    _check_key(entry.key)
    if is_binary_key(entry.key):
        return entry.value
    return _text_bytes(entry.key, entry.value).decode("ascii")


def decode_metadata(entries: Iterable[frame_pb2.MetadataEntry]) -> grpc.aio.Metadata:
    """Received headers or trailers as grpc.aio Metadata, as a grpc.aio client returns
    them: bytes for ``-bin`` keys, str otherwise; repeated keys grouped at the first one's
    place (grpc.aio.Metadata keeps one list of values per key)."""
    result = grpc.aio.Metadata()
    for entry in entries:
        result.add(entry.key, _decode_value(entry))
    return result


def decode_invocation_metadata(entries: Iterable[frame_pb2.MetadataEntry]) -> InvocationMetadata:
    """Received request metadata as a grpc.aio server hands it to handlers and
    interceptors: a tuple of grpc's ``_Metadatum`` pairs in arrival order, bytes for
    ``-bin`` keys, str otherwise. Raises MetadataError for a key or value gRPC would not
    carry."""
    return tuple(metadatum(entry.key, _decode_value(entry)) for entry in entries)
