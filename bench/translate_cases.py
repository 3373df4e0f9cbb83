"""The translator micro-benchmarks, run inside a worker process: each case is one pure
conversion between legacy JSON and typed messages, timed over many iterations."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from bench.payload import PAYLOAD_BYTES, json_data
from syncwire.v1 import sync_pb2, types_pb2

BATCH = 500

Op = Callable[[], object]


def _sync_frame() -> bytes:
    return orjson.dumps({"type": "sync", "data": json_data(1, time.monotonic_ns())})


def _fanned_out(delta: types_pb2.Delta) -> sync_pb2.SyncResponse:
    """The delta as the server fans it out: server fields filled in."""
    delta.collection_id = delta.collection_id or "default"
    delta.peer_id = str(uuid.uuid4())
    delta.offset = 1
    delta.epoch = "0123456789abcdef"
    delta.server_time.GetCurrentTime()
    return sync_pb2.SyncResponse(delta=delta)


def _wrapper_frame() -> bytes:
    from server.legacy import encode_envelope

    delta = types_pb2.Delta(
        collection_id="doc-1",
        crdt_type=types_pb2.CRDT_TYPE_LWW_REGISTER,
        delta=bytes(range(256))[:PAYLOAD_BYTES],
        replica_id=str(uuid.uuid4()),
    )
    delta.timestamp.GetCurrentTime()
    return encode_envelope(types_pb2.Envelope(version=1, message_id="m1", delta=delta))


def _legacy_sync_to_typed() -> Op:
    from server.legacy import decode_client_message

    frame = _sync_frame()
    return lambda: decode_client_message(frame)


def _typed_to_legacy_sync() -> Op:
    from server.legacy import decode_client_message, render_for_legacy

    response = _fanned_out(decode_client_message(_sync_frame()).request.publish.delta)
    return lambda: render_for_legacy(response)


def _wrapper_to_typed() -> Op:
    from server.legacy import decode_client_message

    frame = _wrapper_frame()
    return lambda: decode_client_message(frame)


def _typed_to_wrapper() -> Op:
    from server.legacy import decode_client_message, render_for_legacy

    response = _fanned_out(decode_client_message(_wrapper_frame()).request.publish.delta)
    return lambda: render_for_legacy(response, wrapper=True)


def _orjson_roundtrip() -> Op:
    frame = _sync_frame()
    return lambda: orjson.dumps(orjson.loads(frame))


CASES: dict[str, Callable[[], Op]] = {
    "legacy sync -> typed": _legacy_sync_to_typed,
    "typed -> legacy sync": _typed_to_legacy_sync,
    "legacy wrapper -> typed": _wrapper_to_typed,
    "typed -> legacy wrapper": _typed_to_wrapper,
    "orjson loads+dumps (reference)": _orjson_roundtrip,
}


def run_case(case: str, seconds: float) -> dict[str, Any]:
    """Calls the case's operation in batches until `seconds` have passed."""
    op = CASES[case]()
    op()
    count = 0
    start = time.perf_counter()
    while True:
        for _ in range(BATCH):
            op()
        count += BATCH
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return {"ops": count, "seconds": elapsed}
