"""The benchmark's messages: a sequence number and a send time inside every payload.

Latency is measured publish-to-receive from the time embedded in the payload, on
CLOCK_MONOTONIC (``time.monotonic_ns``), which all processes of one machine share.
Binary transports carry 256 bytes; JSON transports carry a ~256-byte JSON object.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import orjson

PAYLOAD_BYTES: Final = 256
_HEADER = struct.Struct("<QQ")
_FILLER = bytes(PAYLOAD_BYTES - _HEADER.size)


def encode_binary(seq: int, sent_ns: int) -> bytes:
    """256 bytes: little-endian seq and send time, then zero filler."""
    return _HEADER.pack(seq, sent_ns) + _FILLER


def decode_binary(payload: bytes) -> tuple[int, int]:
    """(seq, sent_ns) of a binary payload."""
    seq, sent_ns = _HEADER.unpack_from(payload)
    return seq, sent_ns


def _json_pad() -> str:
    """Filler that makes the encoded JSON object PAYLOAD_BYTES long for 19-digit times
    and short sequence numbers (the sizes of a real run differ by a few bytes)."""
    probe = orjson.dumps({"seq": 1, "t": 10**18, "pad": ""})
    return "x" * (PAYLOAD_BYTES - len(probe))


_PAD: Final = _json_pad()


def json_data(seq: int, sent_ns: int) -> dict[str, Any]:
    """The JSON object a JSON transport carries (legacy `data`, Socket.IO event arg)."""
    return {"seq": seq, "t": sent_ns, "pad": _PAD}


def decode_json_data(data: Any) -> tuple[int, int]:
    """(seq, sent_ns) of a decoded JSON payload object."""
    return int(data["seq"]), int(data["t"])
