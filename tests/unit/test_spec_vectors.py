"""Every vector of the spec's appendix (and the derived ones) reproduces byte for byte."""

from __future__ import annotations

import copy

import pytest
from signedjson.key import decode_signing_key_base64, get_verify_key

from homeserver.crypto.base64 import decode_base64, encode_base64
from homeserver.crypto.canonical_json import encode_canonical_json, parse_json
from homeserver.crypto.signing import sign_json, verify_json
from homeserver.events.hashes import add_content_hash, check_content_hash
from homeserver.events.ids import compute_event_id, room_id_from_create_event_id
from homeserver.events.signing import sign_event, verify_event_signature
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, V1, V3, V4, V11, V12
from tests.spec_vectors import load_vectors

VECTORS = load_vectors()
KEY_INFO = VECTORS["signing_key"]
SERVER = KEY_INFO["server_name"]


@pytest.fixture
def signing_key():
    return decode_signing_key_base64(
        "ed25519", KEY_INFO["key_id"].split(":")[1], KEY_INFO["seed_base64"]
    )


@pytest.mark.parametrize("case", VECTORS["unpadded_base64"]["cases"], ids=lambda c: c["input"])
def test_unpadded_base64(case):
    assert encode_base64(case["input"].encode()) == case["output"]
    assert decode_base64(case["output"]) == case["input"].encode()


@pytest.mark.parametrize("case", VECTORS["canonical_json"], ids=lambda c: c["what"])
def test_canonical_json(case):
    value = parse_json(case["input_text"])
    assert encode_canonical_json(value) == case["canonical"].encode("utf-8")


def test_public_key_matches(signing_key):
    expected = VECTORS["derived_not_in_spec"]["test_key_public_key_base64"]
    assert encode_base64(get_verify_key(signing_key).encode()) == expected


@pytest.mark.parametrize("case", VECTORS["json_signing"], ids=lambda c: c["what"])
def test_json_signing(case, signing_key):
    signed = sign_json(copy.deepcopy(case["input"]), SERVER, signing_key)
    assert signed == case["expected"]
    verify_json(signed, SERVER, KEY_INFO["key_id"], get_verify_key(signing_key))


def _sign_event_vector(room_version, case, signing_key):
    pdu = copy.deepcopy(case["input"])
    pdu.pop("hashes", None)
    pdu.pop("signatures", None)
    add_content_hash(pdu)
    sign_event(room_version, pdu, SERVER, signing_key)
    return pdu


@pytest.mark.parametrize("case", VECTORS["event_signing"], ids=lambda c: c["what"])
def test_event_signing_v1_rules(case, signing_key):
    signed = _sign_event_vector(V1, case, signing_key)
    assert encode_canonical_json(signed) == encode_canonical_json(case["expected"])
    assert check_content_hash(signed)
    verify_event_signature(V1, signed, SERVER, KEY_INFO["key_id"], get_verify_key(signing_key))


@pytest.mark.parametrize(
    "case",
    VECTORS["derived_not_in_spec"]["event_signing_with_v11_redaction"],
    ids=lambda c: c["what"],
)
def test_event_signing_v11_rules(case, signing_key):
    signed = _sign_event_vector(V11, case, signing_key)
    assert encode_canonical_json(signed) == encode_canonical_json(case["expected"])


def test_event_ids_of_minimal_event():
    ids = VECTORS["derived_not_in_spec"]["event_ids_of_minimal_event"]
    signed = VECTORS["event_signing"][0]["expected"]
    assert compute_event_id(V3, signed) == ids["room_v3"]
    for identifier in ("4", "5", "6", "7", "8", "9", "10"):
        assert compute_event_id(KNOWN_ROOM_VERSIONS[identifier], signed) == ids["room_v4_to_v10"]
    assert compute_event_id(V11, signed) == ids["room_v11_v12"]
    assert compute_event_id(V12, signed) == ids["room_v11_v12"]


def test_v1_event_id_is_carried():
    signed = VECTORS["event_signing"][1]["expected"]
    assert compute_event_id(V1, signed) == "$0:domain"


def test_v12_create_event(signing_key):
    case = VECTORS["derived_not_in_spec"]["room_v12_create_event"]
    pdu = copy.deepcopy(case["input"])
    add_content_hash(pdu)
    sign_event(V12, pdu, SERVER, signing_key)
    assert encode_canonical_json(pdu) == encode_canonical_json(case["expected_signed"])
    event_id = compute_event_id(V12, pdu)
    assert event_id == case["event_id"]
    assert room_id_from_create_event_id(event_id) == case["room_id"]


def test_v3_and_v4_differ_only_in_alphabet():
    # a hash whose base64 has '+' or '/' shows the two alphabets apart
    for depth in range(1, 200):
        pdu = dict(VECTORS["event_signing"][0]["expected"], depth=depth)
        v3_id, v4_id = compute_event_id(V3, pdu), compute_event_id(V4, pdu)
        if v3_id != v4_id:
            assert v3_id.translate(str.maketrans("+/", "-_")) == v4_id
            return
    pytest.fail("no hash with + or / found")
