"""How this server reads received JSON: what it refuses and how numbers come out."""

from __future__ import annotations

import pytest

from homeserver.crypto.canonical_json import UnencodableJSON, parse_json


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("1e10", 10_000_000_000),
        ("1.5", 1.5),
        ("-0.0", 0),
        ('"\\ud83d\\ude00"', "\U0001f600"),
    ],
)
def test_accepted(text: str, expected: object) -> None:
    assert parse_json(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "Infinity",
        "-Infinity",
        '{"": 1e310}',  # overflows to infinity: could never be written back out
        "[-1e999]",
        "{",
    ],
)
def test_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_json(text)


def test_lone_surrogate_refused() -> None:
    with pytest.raises(UnencodableJSON):
        parse_json('"\\ud800"')
