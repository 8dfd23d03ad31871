"""Canonical JSON's two encoders write the same bytes: orjson's fast path is taken only where
it cannot differ from Python's ``json`` (what Synapse's ``canonicaljson`` writes), and the strict
check (room v6+) refuses what the walk refuses, whichever path answers."""

from __future__ import annotations

import enum
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.crypto.canonical_json import (
    MAX_SAFE_INTEGER,
    NonCanonicalJSON,
    canonical_json_text,
    check_strict_canonical,
    encode_canonical_json,
)

_reference = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True
)

# Text with what escaping and key order could trip on: control characters, quotes,
# backslashes, line and paragraph separators, BOM, astral characters, numbers inside strings.
_text = st.text(
    alphabet=st.sampled_from(
        [chr(c) for c in range(0x20)]
        + list('"\\/.eE0123456789 abcnul')
        + ["\x7f", "\x80", "é", "\u2028", "\u2029", "\ufeff", "\uffff", "😀", "\U0010ffff"]
    ),
    max_size=8,
)
_scalars = (
    _text
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)


def _reference_bytes(value: object) -> bytes | type[Exception]:
    try:
        return _reference.encode(value).encode("utf-8")
    except ValueError as e:
        return type(e)


def _ours(value: object) -> bytes | type[Exception]:
    try:
        return encode_canonical_json(value)
    except ValueError as e:
        return type(e)


@settings(max_examples=3000)
@given(_values)
def test_the_bytes_are_pythons_json(value: object) -> None:
    assert _ours(value) == _reference_bytes(value)


@settings(max_examples=1000)
@given(_values)
def test_the_strict_check_agrees_with_the_walk(value: object) -> None:
    def walk_refuses(item: object) -> bool:
        if isinstance(item, bool) or item is None or isinstance(item, str):
            return False
        if isinstance(item, int):
            return not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            return any(walk_refuses(v) for v in item.values())
        return any(walk_refuses(v) for v in item)  # type: ignore[attr-defined]

    refused = False
    try:
        check_strict_canonical(value)
    except NonCanonicalJSON:
        refused = True
    assert refused == walk_refuses(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Where orjson alone would write other bytes than json: each is handed to json.
        ({"f": 1e16}, b'{"f":1e+16}'),
        ({"f": 1e-7}, b'{"f":1e-07}'),
        ({"f": 1.0}, b'{"f":1.0}'),
        ({"big": 2**64 + 1}, b'{"big":18446744073709551617}'),
        ({"t": (1, "a")}, b'{"t":[1,"a"]}'),
        ({"n": None, "s": "1.5 is not a float"}, b'{"n":null,"s":"1.5 is not a float"}'),
    ],
)
def test_values_json_writes_differently_from_orjson(value: object, expected: bytes) -> None:
    assert encode_canonical_json(value) == expected
    assert canonical_json_text(value) == expected.decode("utf-8")


def test_nan_and_infinity_are_refused() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError):
            encode_canonical_json({"x": [bad]})
        with pytest.raises(NonCanonicalJSON):
            check_strict_canonical({"x": [bad]})


def test_subclasses_are_written_as_json_writes_them() -> None:
    class Level(enum.IntEnum):
        ADMIN = 100

    class Tagged(str):
        pass

    value = {"level": Level.ADMIN, "tag": Tagged("x"), "bool": True}
    assert encode_canonical_json(value) == _reference.encode(value).encode("utf-8")


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        encode_canonical_json({"x": "\ud800"})


def test_strict_integer_bounds() -> None:
    check_strict_canonical({"a": [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]})
    for bad in (MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 2**64):
        with pytest.raises(NonCanonicalJSON, match=r"integer out of range at a\[0\]"):
            check_strict_canonical({"a": [bad]})
