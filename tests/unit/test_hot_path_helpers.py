"""Pure pieces of issue 18's hot path: random opaque IDs drawn from one read of the random
source, and the argon2 parameters of new password hashes."""

from __future__ import annotations

import string
from collections import Counter

import pytest
from argon2 import extract_parameters

from homeserver.crypto import passwords
from homeserver.events.ids import new_opaque_event_id, new_room_id, random_opaque

ALPHABET = set(string.ascii_letters + string.digits)


@pytest.mark.parametrize("length", [1, 18, 24, 200])
def test_random_opaque_length_and_alphabet(length: int) -> None:
    value = random_opaque(length)
    assert len(value) == length
    assert set(value) <= ALPHABET


def test_random_opaque_uses_the_whole_alphabet_evenly() -> None:
    counts = Counter("".join(random_opaque() for _ in range(4000)))
    assert set(counts) == ALPHABET
    # 72,000 draws over 62 characters: about 1,161 each; a biased map (byte % 62 without
    # rejection) would give the first 8 characters about 25 % more.
    assert max(counts.values()) / min(counts.values()) < 1.2


def test_random_ids_differ_and_keep_their_shape() -> None:
    ids = {new_room_id("example.com") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("!") and i.endswith(":example.com") and len(i) == 31 for i in ids)
    assert new_opaque_event_id("example.com").startswith("$")


def test_configured_hash_parameters_and_old_hashes_still_verify(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(passwords, "_hasher", passwords._hasher)  # restored afterwards
    old = passwords.hash_password("secret")
    passwords.configure_hashing(time_cost=1, memory_cost=8, parallelism=1)
    cheap = passwords.hash_password("secret")
    parameters = extract_parameters(cheap)
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (1, 8, 1)
    assert passwords.verify_password(cheap, "secret")
    assert not passwords.verify_password(cheap, "other")
    # A hash made with other parameters still verifies, and is due for re-hashing.
    assert passwords.verify_password(old, "secret")
    assert passwords.needs_rehash(old)
    assert not passwords.needs_rehash(cheap)
