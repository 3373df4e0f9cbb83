"""Strict JSON at the legacy edge: what serde_json rejects is rejected, numbers stay exact,
the nesting and size limits sit exactly where the old server put them."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.legacy import (
    MAX_DEPTH,
    InvalidUtf8Error,
    LegacyProtocolError,
    check_message_size,
    decode_client_message,
    payload_size,
)
from tests.legacy_strategies import canonical, exact_json


def _code(payload: str | bytes) -> str:
    with pytest.raises(LegacyProtocolError) as caught:
        decode_client_message(payload)
    assert caught.value.reason
    return caught.value.code


def _sync(data_json: str) -> str:
    return '{"type":"sync","data":' + data_json + "}"


def _data(payload: str | bytes) -> object:
    return exact_json(decode_client_message(payload).request.publish.delta.delta)


@pytest.mark.parametrize(
    "payload",
    [
        "",
        " ",
        '{"type":"sync"',
        '{"type":"sync","data":NaN}',
        '{"type":"sync","data":Infinity}',
        '{"type":"sync","data":-Infinity}',
        '{"type":"sync","data":1e400}',
        '{"type":"sync","data":-1e400}',
        '{"type":"sync","data":' + "9" * 400 + "}",
        '{"type":"sync","data":"\\ud800"}',
        '{"type":"sync","data":"\\udc00 low first"}',
        '{"type":"sync","data":"\\ud800\\u0041"}',
        '{"type":"sync","data":[1,]}',
        '{"type":"sync","data":01}',
        "{'type':'sync','data':1}",
        '{"type":"sync","data":1} // comment',
        '{"type":"sync","data":"raw\ttab"}',
        '{"type":"sync","data":1}{"type":"sync","data":2}',
        "\ufeff" + '{"type":"sync","data":1}',
    ],
)
def test_non_strict_json_is_invalid_json(payload: str) -> None:
    assert _code(payload) == "invalid_json"
    assert _code(payload.encode("utf-8")) == "invalid_json"


@pytest.mark.parametrize("payload", ["1", '"sync"', "null", "true", "[]", "3.5"])
def test_non_object_json_is_invalid_message(payload: str) -> None:
    assert _code(payload) == "invalid_message"


def _nested(depth: int) -> str:
    """`data` nested so that the whole message is `depth` levels deep."""
    inner = depth - 1
    return _sync("[" * inner + "]" * inner)


def test_nesting_limit_is_serde_json_limit() -> None:
    assert MAX_DEPTH == 127
    assert _data(_nested(64)) is not None
    assert _data(_nested(127)) is not None
    assert _code(_nested(128)) == "invalid_json"
    assert _code(_nested(1100)) == "invalid_json"  # beyond orjson's own limit too
    objects = _sync('{"a":' * 127 + "1" + "}" * 127)
    assert _code(objects) == "invalid_json"


def test_many_brackets_without_depth_are_fine() -> None:
    """More than 127 brackets, shallow: the exact depth walk, not the bracket bound, decides."""
    wide = _sync("[" + ",".join(["[]"] * 300) + "]")
    assert _data(wide) == [[]] * 300
    in_strings = _sync(json.dumps("[{" * 500))
    assert _data(in_strings) == "[{" * 500


@pytest.mark.parametrize(
    "number",
    [
        "9007199254740993",
        "18446744073709551615",
        "-9223372036854775808",
        "18446744073709551616",
        "-9223372036854775809",
        "1" + "0" * 300,
        "-0.0",
        "5e-324",
        "1.7976931348623157e+308",
        "1e+21",
        "1E21",
        "1e-7",
        "123456789.125",
        "1.0",
        "0.1",
    ],
)
def test_numbers_keep_their_exact_value(number: str) -> None:
    expected = exact_json(number)
    assert canonical(_data(_sync(number))) == canonical(expected)
    # Alongside floats that take the exact (standard library) path.
    mixed = f"[{number},1e16,1e-7,-0.0]"
    assert canonical(_data(_sync(mixed))) == canonical(exact_json(mixed))


@given(
    st.floats(min_value=1e16, allow_infinity=False)
    | st.floats(max_value=-1e16, allow_infinity=False)
)
def test_orjson_writes_large_floats_with_an_exponent(value: float) -> None:
    """The exactness check relies on it: a big integer orjson read as a double shows `e+`."""
    assert b"e+" in orjson.dumps(value)


@given(st.integers(min_value=-(10**300), max_value=10**300))
def test_every_integer_survives(value: int) -> None:
    assert _data(_sync(str(value))) == value


def test_invalid_utf8_bytes_are_fatal_not_invalid_json() -> None:
    for payload in (
        b'{"type":"sync","data":"\xff"}',
        b'{"type":"sync","data":"\xed\xa0\x80"}',  # an encoded surrogate
        b'{"type":"sync","data":"\xc3"}',  # truncated sequence
        b"\x80",
    ):
        with pytest.raises(InvalidUtf8Error) as caught:
            decode_client_message(payload)
        assert caught.value.close_code == 1007 and caught.value.code == "invalid_json"


def test_str_with_lone_surrogate_is_invalid_json() -> None:
    payload = _sync('"\ud800"')  # a Python str no WebSocket text frame can produce
    assert payload_size(payload) == len(payload) + 2
    assert _code(payload) == "invalid_json"


def test_unicode_escapes_and_raw_text_decode_alike() -> None:
    escaped = _sync('"\\u00e9\\ud83d\\ude00\\u0000"')
    raw = _sync('"é😀\\u0000"')
    assert _data(escaped) == _data(raw) == "é😀\0"


@pytest.mark.parametrize(("char", "width"), [("a", 1), ("é", 2), ("€", 3), ("😀", 4)])
def test_size_limit_counts_utf8_bytes(char: str, width: int) -> None:
    fits = char * (1_048_576 // width)
    assert check_message_size(fits) == 1_048_576 // width * width
    assert check_message_size(fits.encode()) == 1_048_576 // width * width
    over = fits + "a" * (1_048_576 - len(fits.encode()) + 1)
    with pytest.raises(LegacyProtocolError) as caught:
        check_message_size(over)
    assert caught.value.code == "message_too_large" and caught.value.grpc_code == 8
    with pytest.raises(LegacyProtocolError):
        check_message_size(over.encode())


def test_size_limit_is_configurable() -> None:
    assert check_message_size("abcd", limit=4) == 4
    with pytest.raises(LegacyProtocolError, match="message_too_large"):
        decode_client_message('{"type":"heartbeat"}', limit=10)


def test_depth_check_without_orjson_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """If an orjson release changed its own nesting limit, the Python walk takes over."""
    from server.legacy import strict_json

    monkeypatch.setattr(strict_json, "_ORJSON_DEPTH_LIMIT", None)
    assert _data(_nested(127)) is not None
    assert _code(_nested(128)) == "invalid_json"
    assert _code(_sync('{"a":' * 127 + "1" + "}" * 127)) == "invalid_json"
    assert _data(_sync("[" + ",".join(["[]"] * 300) + "]")) == [[]] * 300


def test_orjson_nesting_limit_is_known() -> None:
    """The fast depth check pads payloads up to orjson's limit; it must have been found."""
    from server.legacy import strict_json

    assert strict_json._ORJSON_DEPTH_LIMIT == 1024
