"""Canonical JSON (spec appendix): sorted keys, no insignificant whitespace, UTF-8.

`encode_canonical_json` is the one way this server turns a JSON value into the bytes that are
hashed and signed. `check_strict_canonical` enforces the room v6+ rule: no floats and integers
within +-(2^53 - 1).

The bytes are those of Python's ``json`` encoder (sorted keys, ``ensure_ascii=False``, no NaN),
which is what Synapse's ``canonicaljson`` writes. orjson writes the same bytes for strings,
integers, booleans, null, objects and arrays several times faster, and event hashing and
signing encode each event several times, so it goes first when a walk of the value finds
nothing it could write differently: a float (orjson writes ``1e16`` where ``json`` writes
``1e+16``, and NaN as ``null`` where ``json`` refuses it), or a type other than those (a
subclass such as an IntEnum, a tuple, a dataclass). orjson itself refuses an integer beyond 64
bits and a lone surrogate; ``json`` then answers as it always did.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

MAX_SAFE_INTEGER = 2**53 - 1

_encoder = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    separators=(",", ":"),
    sort_keys=True,
)

#: How deep the fast walks go before leaving a value to the slow path (Python's recursion limit
#: must never be the judge; the walks in the slow path are iterative).
_FAST_DEPTH = 64


def _plain(value: Any, safe_ints: bool, depth: int = 0) -> bool:
    """Whether ``value`` holds only dicts, lists, strings, ints, bools and None (exact types;
    with ``safe_ints``, every int within +-(2^53 - 1)), found without building anything: the
    common case, checked at C-call speed per item."""
    kind = type(value)
    if kind is dict:
        items = value.values()
    elif kind is list:
        items = value
    elif kind is int:
        return not safe_ints or -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    else:
        return kind is str or kind is bool or value is None
    if depth > _FAST_DEPTH:
        return False
    for item in items:
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not safe_ints or -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return False
        if (kind is dict or kind is list) and _plain(item, safe_ints, depth + 1):
            continue
        return False
    return True


def is_plain(value: Any, *, safe_ints: bool = False) -> bool:
    """Whether ``value`` holds only dicts, lists, strings, ints, bools and None (exact types;
    with ``safe_ints``, every int within +-(2^53 - 1)): then it stays so for as long as it is
    only given more of the same, and ``plain=True`` may spare the encoders their own walk."""
    return _plain(value, safe_ints)


def _fast(value: Any, plain: bool = False) -> bytes | None:
    """orjson's bytes when they are certainly ``json``'s, else None."""
    if not plain and not _plain(value, False):
        return None
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, a lone surrogate
        return None


def encode_canonical_json(value: Any, *, plain: bool = False) -> bytes:
    """The canonical JSON bytes of ``value``. ``plain``: the caller found it :func:`is_plain`
    (building one event encodes it four times; one walk serves them all)."""
    encoded = _fast(value, plain)
    return encoded if encoded is not None else _encoder.encode(value).encode("utf-8")


def canonical_json_text(value: Any) -> str:
    encoded = _fast(value)
    return encoded.decode("utf-8") if encoded is not None else _encoder.encode(value)


class NonCanonicalJSON(ValueError):
    """A value that strict canonical JSON (room v6+) does not allow."""


def check_strict_canonical(value: Any, path: str = "", *, plain: bool = False) -> None:
    """Raise :class:`NonCanonicalJSON` naming the first float or out-of-range integer.
    ``plain``: the caller found it :func:`is_plain` with ``safe_ints`` (nothing to refuse)."""
    if plain or _plain(value, True):
        return
    # Something to refuse, or a type the fast walk leaves alone (a tuple, a subclass): the walk
    # that names the place decides.
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        if isinstance(item, int):
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                raise NonCanonicalJSON(f"integer out of range at {where or '<root>'}")
        elif isinstance(item, float):
            raise NonCanonicalJSON(f"float not allowed at {where or '<root>'}")
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((f"{where}.{key}" if where else str(key), child))
        elif isinstance(item, list | tuple):
            for index, child in enumerate(item):
                stack.append((f"{where}[{index}]", child))
        else:
            raise NonCanonicalJSON(f"value of type {type(item).__name__} at {where or '<root>'}")


def _parse_number(text: str) -> int | float:
    """JSON numbers with an integral value become ints (``1e10`` is the integer 10000000000)."""
    value = float(text)
    if math.isinf(value):
        # 1e310 overflows to infinity, which no JSON encoder can write back.
        raise ValueError(f"number {text[:40]} is out of range")
    if value.is_integer() and abs(value) <= 2**63:
        return int(value)
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_float=_parse_number, parse_constant=_refuse_constant)


#: A ``\\uD800``-``\\uDFFF`` escape: the only way a lone surrogate gets into a parsed string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class UnencodableJSON(ValueError):
    """Well-formed JSON holding a value that has no UTF-8 form (a lone surrogate)."""


#: How deeply the JSON of a request may nest. Python's parser stops near 1,000 levels, but the
#: code handling a body recurses too (``copy.deepcopy``, redaction, the encoders), at several
#: frames a level, so a body a few hundred levels deep would fail there as a 500. serde_json
#: (Conduit and other Rust servers) stops at 128 as well.
MAX_REQUEST_DEPTH = 128


class JSONTooDeep(ValueError):
    """Well-formed JSON nested deeper than ``max_depth``."""


def _deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_json(text: str | bytes, *, max_depth: int | None = None) -> Any:
    """Parse JSON as this server reads all JSON it receives: NaN and Infinity refused, integral
    numbers as integers, lone surrogates (``"\\ud800"``) refused because they cannot be encoded
    as UTF-8 — neither for signing nor for either database; with ``max_depth``, arrays and
    objects nested deeper refused (:class:`JSONTooDeep`). Raises ValueError on malformed
    input."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    value = _decoder.decode(text)
    # Only text holding a surrogate escape is walked (a valid pair is fine; a lone one is not).
    if _SURROGATE_ESCAPE.search(text) is not None and _has_lone_surrogate(value):
        raise UnencodableJSON("lone surrogate in JSON string")
    # Only text with that many brackets at all can nest that deep: most bodies are not walked.
    if (
        max_depth is not None
        and text.count("[") + text.count("{") > max_depth
        and _deeper_than(value, max_depth)
    ):
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")
    return value
