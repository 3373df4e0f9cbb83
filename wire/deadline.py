"""Call timeouts as `google.protobuf.Duration` and back (CallStart.timeout)."""

from __future__ import annotations

import math

from google.protobuf.duration_pb2 import Duration

# Longer timeouts are clamped: nobody means a deadline a century away, and clamping keeps
# the arithmetic far from float overflow.
MAX_TIMEOUT_SECONDS = 100 * 365 * 24 * 3600


class DeadlineError(ValueError):
    """A Duration that cannot be a timeout (negative or out of range)."""


def timeout_to_duration(timeout: float) -> Duration:
    """Encodes a relative timeout in seconds; negative or NaN timeouts mean already expired."""
    if math.isnan(timeout) or timeout < 0:
        timeout = 0.0
    timeout = min(timeout, float(MAX_TIMEOUT_SECONDS))
    seconds = math.floor(timeout)
    nanos = min(round((timeout - seconds) * 1e9), 999_999_999)
    return Duration(seconds=seconds, nanos=nanos)


def duration_to_timeout(duration: Duration) -> float:
    """Decodes CallStart.timeout into seconds, rejecting what no sender may produce."""
    if duration.seconds < 0 or duration.nanos < 0:
        raise DeadlineError(f"negative timeout {duration.seconds}s {duration.nanos}ns")
    if duration.nanos > 999_999_999:
        raise DeadlineError(f"timeout nanos out of range: {duration.nanos}")
    return min(duration.seconds + duration.nanos / 1e9, float(MAX_TIMEOUT_SECONDS))
