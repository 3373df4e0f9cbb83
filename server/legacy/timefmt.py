"""Legacy time encodings <-> google.protobuf.Timestamp.

Two encodings exist. The type-tagged shape uses RFC 3339 strings (chrono's `to_rfc3339`,
offset `+00:00`); the wrapper shape uses serde's `SystemTime` object
`{"secs_since_epoch": u64, "nanos_since_epoch": u32}`. RFC 3339 output uses the minimal
number of fraction digits (none for whole seconds), which reproduces every fixture's
string exactly and is still valid RFC 3339 for any legacy parser.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from server.legacy.errors import UnrepresentableError, invalid_message

NANOS_PER_SECOND: Final = 1_000_000_000
MIN_SECONDS: Final = -62_135_596_800
"""0001-01-01T00:00:00Z, the first second a Timestamp (and RFC 3339) can hold."""
MAX_SECONDS: Final = 253_402_300_799
"""9999-12-31T23:59:59Z, the last second a Timestamp (and RFC 3339) can hold."""

SECS_KEY: Final = "secs_since_epoch"
NANOS_KEY: Final = "nanos_since_epoch"
_SYSTEMTIME_KEYS: Final = frozenset({SECS_KEY, NANOS_KEY})

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND: Final = timedelta(seconds=1)
_RFC3339: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)


def format_rfc3339(timestamp: Timestamp) -> str:
    """`2025-09-04T10:15:30.5+00:00`: UTC, `+00:00`, minimal fraction digits.

    Never raises: a Timestamp outside years 1..9999 (invalid by its own definition) is
    clamped to that range, and out-of-range nanos are carried into seconds.
    """
    seconds, nanos = timestamp.seconds, timestamp.nanos
    if not 0 <= nanos < NANOS_PER_SECOND:
        carry, nanos = divmod(nanos, NANOS_PER_SECOND)
        seconds += carry
    if seconds < MIN_SECONDS:
        seconds, nanos = MIN_SECONDS, 0
    elif seconds > MAX_SECONDS:
        seconds, nanos = MAX_SECONDS, NANOS_PER_SECOND - 1
    text = _date_time(seconds)
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "+00:00"


@functools.lru_cache(maxsize=256)
def _date_time(seconds: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS` of a second; cached, as server times repeat within a second."""
    moment = _EPOCH + timedelta(seconds=seconds)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


def parse_rfc3339(text: str) -> Timestamp | None:
    """The instant an RFC 3339 date-time names, or None if `text` is not one.

    Accepts `Z`/`z` or any `+hh:mm`/`-hh:mm` offset and up to 9 fraction digits (a
    Timestamp holds nanoseconds; more digits would be silently truncated, so they are
    refused). Leap seconds (`:60`) and dates outside years 1..9999 are refused too.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    if fraction is not None and len(fraction) > 9:
        return None
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:
        return None
    seconds = (moment - _EPOCH) // _ONE_SECOND
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            return None
        offset = int(off_h) * 3600 + int(off_m) * 60
        seconds -= offset if sign == "+" else -offset
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        return None
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    return Timestamp(seconds=seconds, nanos=nanos)


def parse_systemtime(value: object, where: str) -> Timestamp:
    """serde's `SystemTime` object -> Timestamp; anything else is `invalid_message`.

    Both keys are required and no other key is allowed (as serde requires); `secs` must
    be a u64 no later than 9999-12-31 and `nanos` below one second (serde would carry a
    larger `nanos` into `secs`, but no serializer ever writes one, and refusing keeps
    every accepted value's round trip exact).
    """
    if not isinstance(value, dict):
        raise invalid_message(f"{where} must be a SystemTime object {{{SECS_KEY}, {NANOS_KEY}}}")
    if value.keys() != _SYSTEMTIME_KEYS:
        missing = sorted(_SYSTEMTIME_KEYS - value.keys())
        extra = sorted(value.keys() - _SYSTEMTIME_KEYS)
        detail = f"missing {missing}" if missing else f"unknown keys {extra}"
        raise invalid_message(f"{where} is not a SystemTime object: {detail}")
    secs, nanos = value[SECS_KEY], value[NANOS_KEY]
    if type(secs) is not int or not 0 <= secs <= MAX_SECONDS:
        raise invalid_message(f"{where}.{SECS_KEY} must be an integer from 0 to {MAX_SECONDS}")
    if type(nanos) is not int or not 0 <= nanos < NANOS_PER_SECOND:
        raise invalid_message(f"{where}.{NANOS_KEY} must be an integer from 0 to 999999999")
    return Timestamp(seconds=secs, nanos=nanos)


def systemtime(timestamp: Timestamp) -> dict[str, int]:
    """Timestamp -> serde's `SystemTime` object, exactly; raises if it has no such form."""
    seconds, nanos = timestamp.seconds, timestamp.nanos
    if not 0 <= seconds <= MAX_SECONDS or not 0 <= nanos < NANOS_PER_SECOND:
        raise UnrepresentableError(
            f"a legacy SystemTime holds 1970 to 9999-12-31 (what parse_systemtime accepts) "
            f"with nanos within one second: got {seconds}s {nanos}ns"
        )
    return {SECS_KEY: seconds, NANOS_KEY: nanos}


def raw_systemtime(timestamp: Timestamp) -> dict[str, int]:
    """Timestamp -> the `SystemTime` object layout, even for values serde could not read.

    For the Delta body relayed as free JSON `data`, where refusing would drop a delta.
    """
    return {SECS_KEY: timestamp.seconds, NANOS_KEY: timestamp.nanos}
