"""The Python codec passes the framing's shared test vectors (tests/fixtures/ws_frames/
vectors.json), which the TypeScript codec passes too (web/test/vectors.test.ts): bytes
encoded by one implementation decode in the other, frame for frame."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from syncwire.ws.v1 import frame_pb2
from wire.codec import FrameDecodeError, decode_batch, encode_message_record, encode_record

VECTORS = json.loads(
    (Path(__file__).parent / "fixtures" / "ws_frames" / "vectors.json").read_text()
)


def _frame(data: dict[str, Any]) -> frame_pb2.Frame:
    return json_format.ParseDict(data, frame_pb2.Frame())


@pytest.mark.parametrize("case", VECTORS["encode"], ids=lambda case: case["name"])
def test_encode_and_decode(case: dict[str, Any]) -> None:
    frames = [_frame(data) for data in case["frames"]]
    assert b"".join(encode_record(frame) for frame in frames).hex() == case["batch"]
    assert decode_batch(bytes.fromhex(case["batch"])) == frames


@pytest.mark.parametrize("case", VECTORS["messageRecords"], ids=lambda case: str(case["callId"]))
def test_message_records(case: dict[str, Any]) -> None:
    payload = bytes.fromhex(case["payload"])
    record = encode_message_record(case["callId"], payload)
    assert record.hex() == case["record"]
    frame = frame_pb2.Frame(call_id=case["callId"], message=frame_pb2.CallMessage(payload=payload))
    assert encode_record(frame) == record


@pytest.mark.parametrize("case", VECTORS["decode"], ids=lambda case: case["name"])
def test_decode_damaged(case: dict[str, Any]) -> None:
    items = decode_batch(bytes.fromhex(case["batch"]))
    assert len(items) == len(case["items"])
    for item, expected in zip(items, case["items"], strict=True):
        if "error" in expected:
            assert isinstance(item, FrameDecodeError)
            assert item.call_id == expected["callId"]
        else:
            assert item == _frame(expected["frame"])
