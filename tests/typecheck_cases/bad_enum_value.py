"""Misuse: an enum field given something other than a value of its own enum.

Checked by tests/test_typecheck.py; each `expect[code]` comment names the error mypy must
report on that line. Formatting is off so that the marked lines stay put.
"""
# fmt: off

from syncwire.v1 import sync_pb2, types_pb2


def enum_name_as_string() -> types_pb2.Delta:
    return types_pb2.Delta(crdt_type="CRDT_TYPE_RGA")  # expect[arg-type]: Argument "crdt_type" to "Delta" has incompatible type "str"


def value_of_another_enum() -> types_pb2.Presence:
    return types_pb2.Presence(action=types_pb2.CRDT_TYPE_LWW_MAP)  # expect[arg-type]: incompatible type "syncwire.v1.types_pb2._CrdtType.ValueType"; expected "syncwire.v1.types_pb2._PresenceAction.ValueType"


def plain_int(subscribed: sync_pb2.Subscribed) -> None:
    subscribed.recovery = 2  # expect[assignment]: (expression has type "int", variable has type "ValueType")
