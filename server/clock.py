"""Server clock helpers."""

from __future__ import annotations

import time

from google.protobuf import timestamp_pb2


def now_timestamp() -> timestamp_pb2.Timestamp:
    """The current wall-clock time as a protobuf Timestamp (nanosecond resolution)."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp
