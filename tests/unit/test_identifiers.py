"""Identifier grammar (spec appendix) with the spec's own examples."""

from __future__ import annotations

import pytest

from homeserver.types import (
    event_id_error,
    is_valid_room_version_string,
    is_valid_server_name,
    is_valid_user_id,
    room_alias_error,
    room_id_error,
)
from tests.spec_vectors import load_vectors

EXAMPLES = load_vectors()["format_examples"]


@pytest.mark.parametrize("name", EXAMPLES["valid_server_names"])
def test_spec_server_names_are_valid(name):
    assert is_valid_server_name(name)


@pytest.mark.parametrize(
    "name", ["", "exa mple.org", "example.org:", "example.org:99999", "[::1", "[zz]:80", "a:b:c"]
)
def test_bad_server_names(name):
    assert not is_valid_server_name(name)


@pytest.mark.parametrize("version", EXAMPLES["valid_room_versions"])
def test_spec_room_version_strings(version):
    assert is_valid_room_version_string(version)


@pytest.mark.parametrize("version", ["", "A", "1 2", "x" * 33])
def test_bad_room_version_strings(version):
    assert not is_valid_room_version_string(version)


@pytest.mark.parametrize(
    ("user_id", "valid"),
    [
        ("@alice:example.org", True),
        ("@a.b_c=d-e/f+g:example.org:8448", True),
        ("@Alice:example.org", False),
        ("alice:example.org", False),
        ("@alice", False),
        ("@:example.org", False),
        ("@" + "a" * 250 + ":example.org", False),
    ],
)
def test_user_ids(user_id, valid):
    assert is_valid_user_id(user_id) is valid


def test_historical_user_ids_accepted_over_federation():
    assert not is_valid_user_id("@Alice Smith:example.org")
    assert is_valid_user_id("@Alice Smith:example.org", historical=True)


def test_room_and_event_ids():
    assert room_id_error(EXAMPLES["room_id_v1_to_v11"]) is None
    assert room_id_error(EXAMPLES["room_id_v12"]) is None
    assert room_id_error("room:example.org")
    for key in ("event_id_v1_v2", "event_id_v3", "event_id_v4_plus"):
        assert event_id_error(EXAMPLES[key]) is None
    assert event_id_error("abc")
    assert room_alias_error("#room:example.org") is None
    assert room_alias_error("#room")
