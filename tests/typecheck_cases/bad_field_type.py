"""Misuse: a field given a value of the wrong type.

Checked by tests/test_typecheck.py; each `expect[code]` comment names the error mypy must
report on that line. Formatting is off so that the marked lines stay put.
"""
# fmt: off

from syncwire.v1 import sync_pb2, types_pb2


def string_offset() -> types_pb2.Delta:
    return types_pb2.Delta(collection_id="doc-1", offset="7")  # expect[arg-type]: Argument "offset" to "Delta" has incompatible type "str"; expected "int"


def text_payload() -> sync_pb2.Blob:
    return sync_pb2.Blob(data="not bytes")  # expect[arg-type]: Argument "data" to "Blob" has incompatible type "str"; expected "bytes"


def assign_string_to_uint64(ack: sync_pb2.PublishAck) -> None:
    ack.offset = "7"  # expect[assignment]: (expression has type "str", variable has type "int")


def wrong_nested_message() -> sync_pb2.PublishRequest:
    return sync_pb2.PublishRequest(delta=types_pb2.Heartbeat())  # expect[arg-type]: Argument "delta" to "PublishRequest" has incompatible type "Heartbeat"
