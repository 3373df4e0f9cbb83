"""Misuse: a message field that does not exist.

Checked by tests/test_typecheck.py; each `expect[code]` comment names the error mypy must
report on that line. Formatting is off so that the marked lines stay put.
"""
# fmt: off

from syncwire.v1 import sync_pb2, types_pb2


def misspelt_constructor_field() -> types_pb2.Delta:
    return types_pb2.Delta(collection="doc-1")  # expect[call-arg]: Unexpected keyword argument "collection" for "Delta"


def misspelt_attribute(delta: types_pb2.Delta) -> object:
    return delta.colection_id  # expect[attr-defined]: "Delta" has no attribute "colection_id"


def unknown_presence_check(request: sync_pb2.SyncRequest) -> bool:
    return request.HasField("subscription")  # expect[arg-type]: Argument 1 to "HasField" of "SyncRequest" has incompatible type "Literal['subscription']"
