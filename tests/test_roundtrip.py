"""Every syncwire message survives the binary wire format and the protobuf JSON mapping.

Messages come from tests/strategies.py, which derives them from the descriptors; the
coverage tests below prove that no message type or field is left out.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from tests.strategies import message_descriptors, messages

DESCRIPTORS = message_descriptors()
ROUND_TRIP = settings(deadline=None, max_examples=60)


def _name(descriptor: Descriptor) -> str:
    return descriptor.full_name


def _declared_messages(repo_root: Path) -> set[str]:
    """Full names of all messages declared in proto/**/*.proto, read from the descriptor pool."""
    pool = descriptor_pool.Default()
    names: set[str] = set()
    proto_dir = repo_root / "proto"
    for path in sorted(proto_dir.rglob("*.proto")):
        file = pool.FindFileByName(path.relative_to(proto_dir).as_posix())
        pending = list(file.message_types_by_name.values())
        while pending:
            descriptor = pending.pop()
            if not descriptor.GetOptions().map_entry:
                names.add(descriptor.full_name)
                pending.extend(descriptor.nested_types)
    return names


def test_every_declared_message_has_a_strategy(repo_root: Path) -> None:
    declared = _declared_messages(repo_root)
    assert declared, "no message found under proto/"
    assert {d.full_name for d in DESCRIPTORS} == declared


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_name)
@ROUND_TRIP
@given(data=st.data())
def test_binary_round_trip(descriptor: Descriptor, data: st.DataObject) -> None:
    message = data.draw(messages(descriptor))
    encoded = message.SerializeToString()
    decoded = type(message)()
    decoded.ParseFromString(encoded)
    assert decoded == message
    assert decoded.SerializeToString(deterministic=True) == message.SerializeToString(
        deterministic=True
    )


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_name)
@ROUND_TRIP
@given(data=st.data())
def test_json_round_trip(descriptor: Descriptor, data: st.DataObject) -> None:
    message = data.draw(messages(descriptor))
    text = json_format.MessageToJson(message)
    assert json_format.Parse(text, type(message)()) == message
    as_dict = json_format.MessageToDict(message, preserving_proto_field_name=True)
    assert json_format.ParseDict(as_dict, type(message)()) == message


def _is_set(field: FieldDescriptor, message: Message) -> bool:
    return any(present is field for present, _ in message.ListFields())


# Generation only (no shrinking: any example will do), from a fixed seed (no flakiness).
FIELD_SEARCH = settings(
    max_examples=2000,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=_name)
def test_strategy_sets_every_field(descriptor: Descriptor) -> None:
    """Each field takes a non-default value in some generated message: none is skipped."""
    strategy = messages(descriptor)
    for field in descriptor.fields:
        condition = functools.partial(_is_set, field)
        example = find(strategy, condition, settings=FIELD_SEARCH, random=random.Random(0))
        assert condition(example)
