"""The ``Authorization: X-Matrix`` request-signing scheme (server-server API, "Request
Authentication"). Pure: builds the JSON object that is signed, formats the header we send and
parses the headers we receive.

Sending follows the spec's compatibility advice (one space after the scheme, lower-case names,
quoted values without escapes, no spaces around commas, ``destination`` always present).
Receiving follows RFC 9110 auth-params: names are case-insensitive and in any order, optional
whitespace around commas and ``=``, quoted values with backslash escapes, unknown parameters
ignored, and — because older servers send them — unquoted values containing ``:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from homeserver.crypto.canonical_json import encode_canonical_json
from homeserver.crypto.signing import key_id, signature_of
from homeserver.types import is_valid_server_name

SCHEME = "X-Matrix"

#: RFC 9110 ``tchar``: what a parameter name (a token) may contain.
_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WHITESPACE = " \t"


class XMatrixParseError(ValueError):
    """The header is not a well-formed X-Matrix credential (answer 400)."""


@dataclass(frozen=True, slots=True)
class XMatrixCredential:
    origin: str
    #: None when an old server left it out (the spec allows that on receipt).
    destination: str | None
    key_id: str
    signature: str


def signing_object(
    method: str, uri: str, origin: str, destination: str, content: Any = None
) -> dict[str, Any]:
    """The JSON object whose canonical form is signed. ``uri`` is the request target exactly as
    sent (percent-encoded path plus ``?query``); ``content`` only when there is a body."""
    obj: dict[str, Any] = {
        "method": method.upper(),
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        obj["content"] = content
    return obj


def signed_bytes(
    method: str, uri: str, origin: str, destination: str, content: Any = None
) -> bytes:
    return encode_canonical_json(signing_object(method, uri, origin, destination, content))


def format_header(origin: str, destination: str, key: str, sig: str) -> str:
    for value in (origin, destination, key, sig):
        # Server names, key IDs and base64 never contain these; refuse rather than escape, as
        # some receivers do not understand escapes.
        if '"' in value or "\\" in value:
            raise ValueError(f"cannot put {value!r} in an X-Matrix header")
    return f'{SCHEME} origin="{origin}",destination="{destination}",key="{key}",sig="{sig}"'


def authorization_header(
    signing_key: SigningKey,
    method: str,
    uri: str,
    origin: str,
    destination: str,
    content: Any = None,
) -> str:
    """The complete ``Authorization`` header value for one request signed with ``signing_key``."""
    sig = signature_of(signing_key, signed_bytes(method, uri, origin, destination, content))
    return format_header(origin, destination, key_id(signing_key), sig)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    """``text[pos]`` is the opening quote; return the unescaped value and the position after
    the closing quote."""
    out: list[str] = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            if pos + 1 >= len(text):
                break
            out.append(text[pos + 1])
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    raise XMatrixParseError("unterminated quoted value")


def parse_params(value: str) -> dict[str, str]:
    """Parse ``X-Matrix name=value, …`` into lower-cased names → values.

    Raises XMatrixParseError for another scheme or malformed syntax.
    """
    scheme, sep, rest = value.strip(_WHITESPACE).partition(" ")
    if scheme.lower() != SCHEME.lower():
        raise XMatrixParseError("not an X-Matrix authorization")
    if not sep:
        raise XMatrixParseError("no parameters")
    params: dict[str, str] = {}
    pos = 0
    expect_param = True
    while True:
        pos = _skip_ws(rest, pos)
        if pos >= len(rest):
            break
        if rest[pos] == ",":
            # Empty list elements are allowed by the RFC's #rule.
            pos += 1
            expect_param = True
            continue
        if not expect_param:
            raise XMatrixParseError("expected ',' between parameters")
        start = pos
        while pos < len(rest) and rest[pos] in _TCHARS:
            pos += 1
        name = rest[start:pos].lower()
        if not name:
            raise XMatrixParseError("expected a parameter name")
        pos = _skip_ws(rest, pos)
        if pos >= len(rest) or rest[pos] != "=":
            raise XMatrixParseError(f"expected '=' after {name!r}")
        pos = _skip_ws(rest, pos + 1)
        if pos < len(rest) and rest[pos] == '"':
            param, pos = _read_quoted(rest, pos)
        else:
            # An unquoted token; accept ':' (and anything but separators) for old senders.
            start = pos
            while pos < len(rest) and rest[pos] not in _WHITESPACE + ',"':
                pos += 1
            param = rest[start:pos]
            if not param:
                raise XMatrixParseError(f"empty value for {name!r}")
        if name in params:
            # Two values for one name are ambiguous: which one did the signer mean?
            raise XMatrixParseError(f"parameter {name!r} given twice")
        params[name] = param
        expect_param = False
    return params


def parse_header(value: str) -> XMatrixCredential:
    """Parse one ``Authorization`` header value; raise XMatrixParseError if malformed or if
    ``origin``, ``key`` or ``sig`` is missing."""
    params = parse_params(value)
    # The spec's prose calls it "signature", its examples and every implementation "sig".
    signature = params.get("sig", params.get("signature"))
    origin = params.get("origin")
    key = params.get("key")
    if not origin or not key or not signature:
        raise XMatrixParseError("origin, key and sig are required")
    destination = params.get("destination")
    for name in (origin, destination):
        if name is not None and not is_valid_server_name(name):
            raise XMatrixParseError(f"{name!r} is not a valid server name")
    return XMatrixCredential(
        origin=origin,
        destination=destination,
        key_id=key,
        signature=signature,
    )


def is_x_matrix(value: str) -> bool:
    return value.strip(_WHITESPACE).partition(" ")[0].lower() == SCHEME.lower()
