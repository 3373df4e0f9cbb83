"""Hypothesis strategies for every syncwire protobuf message, derived from the descriptors.

Why derived: a field or message added to the schema is generated (and so round-trip tested)
with no change here. Values are valid: integers within their wire type, declared enum
values only, text without surrogates, Timestamps and Durations inside the ranges their JSON
form allows, exactly one member of every real oneof, proto3 `optional` fields sometimes
unset. Nesting is bounded by `max_depth`; deeper message fields are left unset (or empty,
when a oneof must be set).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any, Final, TypeVar, cast

from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

import syncwire

M = TypeVar("M", bound=Message)

DEFAULT_MAX_DEPTH: Final = 4
MAX_REPEATED: Final = 3

# Limits of the protobuf JSON mapping (google/protobuf/timestamp.proto, duration.proto).
MIN_TIMESTAMP_SECONDS: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_SECONDS: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_DURATION_SECONDS: Final = 315_576_000_000  # about 10,000 years
MAX_NANOS: Final = 999_999_999

_INTEGER_RANGES: Final[dict[int, tuple[int, int]]] = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

# Well-known types whose valid values a generic walk cannot produce (type URLs, JSON
# field paths, recursive values): a schema that starts using one needs a strategy here.
_UNSUPPORTED_WELL_KNOWN: Final = frozenset(
    {
        "google.protobuf.Any",
        "google.protobuf.FieldMask",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
    }
)


def timestamps() -> st.SearchStrategy[Timestamp]:
    """Any Timestamp the JSON mapping can represent (years 1 to 9999)."""
    return st.builds(
        Timestamp,
        seconds=st.integers(MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS),
        nanos=st.integers(0, MAX_NANOS),
    )


@st.composite
def durations(draw: st.DrawFn) -> Duration:
    """Any valid Duration: within +-10,000 years, nanos carrying the sign of seconds."""
    seconds = draw(st.integers(-MAX_DURATION_SECONDS, MAX_DURATION_SECONDS))
    nanos = draw(st.integers(0, MAX_NANOS))
    if seconds < 0 or (seconds == 0 and draw(st.booleans())):
        nanos = -nanos
    return Duration(seconds=seconds, nanos=nanos)


def structs() -> st.SearchStrategy[Struct]:
    """Small Structs (JSON objects): null, booleans, finite numbers, text, lists and
    nested objects, a few levels deep."""
    scalars = st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    values = st.recursive(
        scalars | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=8,
    )

    def build(fields: dict[str, Any]) -> Struct:
        struct = Struct()
        struct.update(fields)
        return struct

    return st.dictionaries(st.text(max_size=8), values, max_size=4).map(build)


_WELL_KNOWN: Final[dict[str, st.SearchStrategy[Message]]] = {
    Timestamp.DESCRIPTOR.full_name: timestamps(),
    Duration.DESCRIPTOR.full_name: durations(),
    Struct.DESCRIPTOR.full_name: structs(),
}


def _walk(descriptors: Iterator[Descriptor]) -> Iterator[Descriptor]:
    for descriptor in descriptors:
        if not descriptor.GetOptions().map_entry:
            yield descriptor
            yield from _walk(iter(descriptor.nested_types))


def message_descriptors() -> list[Descriptor]:
    """Every message type of every module generated under `syncwire`, nested ones included.

    Found by importing each `*_pb2` module of the generated package, so a new .proto file
    is covered once it is regenerated.
    """
    found: dict[str, Descriptor] = {}
    for module_info in pkgutil.walk_packages(syncwire.__path__, prefix="syncwire."):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(module_info.name)
            top_level = module.DESCRIPTOR.message_types_by_name.values()
            found.update((d.full_name, d) for d in _walk(iter(top_level)))
    return [found[name] for name in sorted(found)]


def messages(
    descriptor: Descriptor, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> st.SearchStrategy[Message]:
    """Random valid instances of the message type `descriptor` describes."""
    return _message_strategy(descriptor, max_depth)


def messages_of(cls: type[M], *, max_depth: int = DEFAULT_MAX_DEPTH) -> st.SearchStrategy[M]:
    """Typed form of `messages`: `messages_of(types_pb2.Delta)` draws `Delta` instances."""
    # The stubs type DESCRIPTOR as a union with the upb class; at run time it is a Descriptor.
    descriptor = cast(Descriptor, cls.DESCRIPTOR)
    return cast(st.SearchStrategy[M], messages(descriptor, max_depth=max_depth))


@functools.cache
def _message_strategy(descriptor: Descriptor, depth_left: int) -> st.SearchStrategy[Message]:
    """Strategy for one message type; cached because nested types recur across messages."""
    if descriptor.full_name in _WELL_KNOWN:
        return _WELL_KNOWN[descriptor.full_name]
    if descriptor.full_name in _UNSUPPORTED_WELL_KNOWN:
        raise NotImplementedError(f"add a strategy for {descriptor.full_name}")
    cls = message_factory.GetMessageClass(descriptor)
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    explicit_optional = {field.name for field in proto.field if field.proto3_optional}

    independent: dict[str, st.SearchStrategy[object]] = {}
    for field in descriptor.fields:
        in_real_oneof = field.containing_oneof is not None and field.name not in explicit_optional
        if in_real_oneof:
            continue
        values = _field_values(field, depth_left)
        if values is None:
            continue
        if field.name in explicit_optional or _is_singular_message(field):
            values = st.none() | values  # None = leave unset
        independent[field.name] = values

    oneof_choices = [
        st.one_of(
            [
                _oneof_member(field, depth_left).map(functools.partial(_single, field.name))
                for field in oneof.fields
            ]
        )
        for oneof in descriptor.oneofs
        if not (len(oneof.fields) == 1 and oneof.fields[0].name in explicit_optional)
    ]

    def build(parts: tuple[dict[str, object], ...]) -> Message:
        kwargs = {
            name: value for part in parts for name, value in part.items() if value is not None
        }
        return cls(**kwargs)

    return st.tuples(st.fixed_dictionaries(independent), *oneof_choices).map(build)


def _single(name: str, value: object) -> dict[str, object]:
    return {name: value}


def _is_singular_message(field: FieldDescriptor) -> bool:
    return field.message_type is not None and not field.is_repeated


def _oneof_member(field: FieldDescriptor, depth_left: int) -> st.SearchStrategy[object]:
    """A oneof must be set: past the depth limit a message member is set to an empty one."""
    values = _field_values(field, depth_left)
    if values is not None:
        return values
    assert field.message_type is not None
    return st.just(message_factory.GetMessageClass(field.message_type)())


def _field_values(field: FieldDescriptor, depth_left: int) -> st.SearchStrategy[object] | None:
    """Values for a field (a list for repeated, a dict for maps); None if too deep to nest."""
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        keys = _single_values(entry.fields_by_name["key"], depth_left)
        items = _single_values(entry.fields_by_name["value"], depth_left)
        if keys is None or items is None:
            return None
        return st.dictionaries(keys, items, max_size=MAX_REPEATED)
    item = _single_values(field, depth_left)
    if item is None or not field.is_repeated:
        return item
    return st.lists(item, max_size=MAX_REPEATED)


def _single_values(field: FieldDescriptor, depth_left: int) -> st.SearchStrategy[object] | None:
    """Values of one element of a field's type."""
    if field.message_type is not None:
        nested = field.message_type
        if nested.full_name not in _WELL_KNOWN and depth_left <= 0:
            return None
        return _message_strategy(nested, depth_left - 1)
    if field.enum_type is not None:
        return st.sampled_from([value.number for value in field.enum_type.values])
    if field.type in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[field.type]
        return st.integers(low, high)
    scalars: dict[int, st.SearchStrategy[object]] = {
        FieldDescriptor.TYPE_BOOL: st.booleans(),
        FieldDescriptor.TYPE_STRING: st.text(max_size=24),
        FieldDescriptor.TYPE_BYTES: st.binary(max_size=48),
        FieldDescriptor.TYPE_FLOAT: st.floats(width=32, allow_nan=False),
        FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=False),
    }
    if field.type not in scalars:
        raise NotImplementedError(f"no strategy for field {field.full_name} (type {field.type})")
    return scalars[field.type]
