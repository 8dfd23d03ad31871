"""X-Matrix: the signed object, the header we send and the headers we accept (RFC 9110)."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from homeserver.crypto.base64 import decode_base64
from homeserver.crypto.signing import generate_signing_key, get_verify_key
from homeserver.federation.xmatrix import (
    XMatrixCredential,
    XMatrixParseError,
    authorization_header,
    format_header,
    parse_header,
    signed_bytes,
    signing_object,
)

SIG = "dGVzdHNpZw"


def test_signing_object_has_content_only_with_a_body() -> None:
    assert signing_object("get", "/_matrix/x?a=b", "o.example", "d.example") == {
        "method": "GET",
        "uri": "/_matrix/x?a=b",
        "origin": "o.example",
        "destination": "d.example",
    }
    with_body = signing_object("PUT", "/p", "o", "d", {"k": 1})
    assert with_body["content"] == {"k": 1}
    # An empty object is still a body.
    assert signing_object("PUT", "/p", "o", "d", {})["content"] == {}


def test_format_header_is_the_compatible_form() -> None:
    assert (
        format_header("o.example", "d.example:8448", "ed25519:k1", SIG)
        == 'X-Matrix origin="o.example",destination="d.example:8448",key="ed25519:k1",'
        f'sig="{SIG}"'
    )
    with pytest.raises(ValueError):
        format_header('o"x', "d", "ed25519:k1", SIG)


def test_authorization_header_signs_canonical_request() -> None:
    key: SigningKey = generate_signing_key("k1")
    header = authorization_header(
        key, "PUT", "/_matrix/federation/v1/send/t%21", "o", "d", {"b": 1}
    )
    credential = parse_header(header)
    assert credential == XMatrixCredential("o", "d", "ed25519:k1", credential.signature)
    message = signed_bytes("PUT", "/_matrix/federation/v1/send/t%21", "o", "d", {"b": 1})
    assert message == (
        b'{"content":{"b":1},"destination":"d","method":"PUT",'
        b'"origin":"o","uri":"/_matrix/federation/v1/send/t%21"}'
    )
    get_verify_key(key).verify(message, decode_base64(credential.signature))


EXPECTED = XMatrixCredential("o.ex", "d.ex", "ed25519:k1", SIG)
NO_DESTINATION = XMatrixCredential("o.ex", None, "ed25519:k1", SIG)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(
            f'X-Matrix origin="o.ex",destination="d.ex",key="ed25519:k1",sig="{SIG}"',
            EXPECTED,
            id="canonical",
        ),
        pytest.param(
            f'x-matrix ORIGIN="o.ex",Destination="d.ex",KEY="ed25519:k1",Sig="{SIG}"',
            EXPECTED,
            id="case-insensitive-scheme-and-names",
        ),
        pytest.param(
            f'X-Matrix sig="{SIG}",key="ed25519:k1",destination="d.ex",origin="o.ex"',
            EXPECTED,
            id="any-order",
        ),
        pytest.param(
            f'X-Matrix origin="o.ex" ,\tdestination="d.ex" , key="ed25519:k1",  sig="{SIG}"',
            EXPECTED,
            id="whitespace-around-commas",
        ),
        pytest.param(
            f"X-Matrix origin=o.ex,destination=d.ex,key=ed25519:k1,sig={SIG}",
            EXPECTED,
            id="unquoted-values-with-colon",
        ),
        pytest.param(
            f'X-Matrix origin="o\\.ex",destination="d.ex",key="ed25519:k1",sig="{SIG}"',
            EXPECTED,
            id="backslash-escape",
        ),
        pytest.param(
            f'X-Matrix origin="o.ex",key="ed25519:k1",sig="{SIG}"',
            NO_DESTINATION,
            id="no-destination",
        ),
        pytest.param(
            f'X-Matrix origin="o.ex",future="x, \\"y\\"",destination="d.ex",'
            f'key="ed25519:k1",sig="{SIG}"',
            EXPECTED,
            id="unknown-param-with-comma-in-quotes",
        ),
        pytest.param(
            f'X-Matrix origin="o.ex",,destination="d.ex",key="ed25519:k1",sig="{SIG}",',
            EXPECTED,
            id="empty-list-elements",
        ),
        pytest.param(
            f'X-Matrix origin = "o.ex", destination = d.ex, key="ed25519:k1",signature="{SIG}"',
            EXPECTED,
            id="spaces-around-equals-and-signature-name",
        ),
        pytest.param(
            f'X-Matrix origin="o.ex:8448",destination="[::1]:8448",key="ed25519:k1",sig="{SIG}"',
            XMatrixCredential("o.ex:8448", "[::1]:8448", "ed25519:k1", SIG),
            id="ports-and-ipv6",
        ),
    ],
)
def test_parse_accepts(header: str, expected: XMatrixCredential) -> None:
    assert parse_header(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(f'Bearer origin="o",key="ed25519:k",sig="{SIG}"', id="other-scheme"),
        pytest.param("X-Matrix", id="no-params"),
        pytest.param(f'X-Matrix key="ed25519:k",sig="{SIG}"', id="no-origin"),
        pytest.param('X-Matrix origin="o",sig="x"', id="no-key"),
        pytest.param('X-Matrix origin="o",key="ed25519:k"', id="no-sig"),
        pytest.param(f'X-Matrix origin="o,key="ed25519:k",sig="{SIG}', id="unterminated-quote"),
        pytest.param(f'X-Matrix origin="o" key="ed25519:k",sig="{SIG}"', id="missing-comma"),
        pytest.param(f'X-Matrix origin,key="ed25519:k",sig="{SIG}"', id="missing-equals"),
        pytest.param(f'X-Matrix origin=,key="ed25519:k",sig="{SIG}"', id="empty-unquoted"),
        pytest.param(
            f'X-Matrix origin="a",origin="b",key="ed25519:k",sig="{SIG}"', id="duplicate-name"
        ),
        pytest.param(f'X-Matrix =x,origin="o",key="ed25519:k",sig="{SIG}"', id="empty-name"),
        pytest.param('X-Matrix origin="o",key="ed25519:k",sig=""', id="empty-sig"),
        pytest.param(f'X-Matrix origin="a b",key="ed25519:k",sig="{SIG}"', id="bad-origin"),
        pytest.param(
            f'X-Matrix origin="o",destination="x/y",key="ed25519:k",sig="{SIG}"',
            id="bad-destination",
        ),
    ],
)
def test_parse_rejects(header: str) -> None:
    with pytest.raises(XMatrixParseError):
        parse_header(header)


def test_synapse_parses_our_header() -> None:
    """Interop: Synapse's own parser reads what we send."""
    from synapse.federation.transport.server._base import _parse_auth_header

    header = authorization_header(generate_signing_key("k1"), "GET", "/x", "o.ex:8448", "d.ex")
    credential = parse_header(header)
    assert _parse_auth_header(header.encode()) == (
        "o.ex:8448",
        "ed25519:k1",
        credential.signature,
        "d.ex",
    )
