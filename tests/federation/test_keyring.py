"""The keyring on both engines: fetching, caching, refetch rules, and the PDU signature check."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from homeserver.config.keys import OldVerifyKey
from homeserver.crypto.base64 import encode_base64
from homeserver.crypto.signing import generate_signing_key, get_verify_key, sign_json
from homeserver.events.event import Event
from homeserver.events.hashes import add_content_hash
from homeserver.events.signing import sign_event
from homeserver.federation.client import FederationClient, FederationUnreachable
from homeserver.federation.keyring import (
    MAX_KEY_LIFETIME_MS,
    REFETCH_INTERVAL_MS,
    Keyring,
    SignatureVerifyError,
    parse_key_response,
)
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.storage import Store
from tests.federation.fake_remote import LOOPBACK_WHITELIST, FakeRemoteServer
from tests.harness import make_config

NOW = 1_700_000_000_000
HOUR = 3600 * 1000
OUR_NAME = "us.example"
OUR_KEY = generate_signing_key("ours")
PEER = "peer.example"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


class Peer:
    """A remote server's keys, served through a fake fetcher (no network)."""

    def __init__(self, name: str = PEER, version: str = "p1") -> None:
        self.name = name
        self.key = generate_signing_key(version)
        self.valid_until_ts = NOW + 24 * HOUR
        self.old: dict[str, Any] = {}
        self.extra_current: list[Any] = []

    def document(self) -> dict[str, Any]:
        verify_keys = {
            f"ed25519:{k.version}": {"key": encode_base64(bytes(get_verify_key(k)))}
            for k in [self.key, *self.extra_current]
        }
        doc = {
            "server_name": self.name,
            "verify_keys": verify_keys,
            "old_verify_keys": self.old,
            "valid_until_ts": self.valid_until_ts,
        }
        return sign_json(doc, self.name, self.key)

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        return sign_json(obj, self.name, self.key)


class Fetcher:
    def __init__(self, *peers: Peer) -> None:
        self.peers = {p.name: p for p in peers}
        self.calls: list[str] = []
        self.override: dict[str, Any] = {}
        self.gate: asyncio.Event | None = None

    async def get_server_keys(self, destination: str) -> dict[str, Any]:
        self.calls.append(destination)
        if self.gate is not None:
            await self.gate.wait()
        if destination in self.override:
            return self.override[destination]
        if destination not in self.peers:
            raise FederationUnreachable("no such server")
        return self.peers[destination].document()


def make_keyring(store: Store, fetcher: Any, clock: Clock, **kwargs: Any) -> Keyring:
    return Keyring(store.keys, fetcher, clock, OUR_NAME, OUR_KEY, **kwargs)


async def test_fetches_verifies_and_caches(store: Store) -> None:
    peer, clock = Peer(), Clock()
    fetcher = Fetcher(peer)
    keyring = make_keyring(store, fetcher, clock)
    signed = peer.sign({"hello": "world"})
    await keyring.verify_json(PEER, signed, valid_at_ts=NOW)
    await keyring.verify_json(PEER, signed, valid_at_ts=NOW + HOUR)
    assert fetcher.calls == [PEER]
    stored = await store.keys.get_server_keys(PEER)
    assert stored["ed25519:p1"].valid_until_ts == peer.valid_until_ts
    assert stored["ed25519:p1"].fetched_ts == NOW
    # A fresh keyring (another process, a restart) uses the table, not the network.
    fresh = make_keyring(store, Fetcher(), Clock())
    await fresh.verify_json(PEER, signed, valid_at_ts=NOW)


async def test_bad_signature_rejected(store: Store) -> None:
    peer = Peer()
    keyring = make_keyring(store, Fetcher(peer), Clock())
    signed = peer.sign({"hello": "world"})
    signed["hello"] = "tampered"
    with pytest.raises(SignatureVerifyError):
        await keyring.verify_json(PEER, signed)
    with pytest.raises(SignatureVerifyError, match="not signed"):
        await keyring.verify_json(PEER, {"hello": "world"})


async def test_validity_capped_at_seven_days(store: Store) -> None:
    peer, clock = Peer(), Clock()
    peer.valid_until_ts = NOW + 30 * 24 * HOUR
    keyring = make_keyring(store, Fetcher(peer), clock)
    await keyring.verify_json(PEER, peer.sign({}), valid_at_ts=NOW)
    stored = await store.keys.get_server_keys(PEER)
    assert stored["ed25519:p1"].valid_until_ts == NOW + MAX_KEY_LIFETIME_MS


async def test_refetch_when_stale_but_rate_limited(store: Store) -> None:
    peer, clock = Peer(), Clock()
    peer.valid_until_ts = NOW + HOUR
    fetcher = Fetcher(peer)
    keyring = make_keyring(store, fetcher, clock)
    signed = peer.sign({"a": 1})
    await keyring.verify_json(PEER, signed, valid_at_ts=NOW)
    # Needed valid later than we have: refetch, but not twice within the interval.
    clock.now += 1000
    with pytest.raises(SignatureVerifyError):
        await keyring.verify_json(PEER, signed, valid_at_ts=NOW + 2 * HOUR)
    assert fetcher.calls == [PEER]
    clock.now += REFETCH_INTERVAL_MS
    peer.valid_until_ts = NOW + 3 * HOUR
    await keyring.verify_json(PEER, signed, valid_at_ts=NOW + 2 * HOUR)
    assert fetcher.calls == [PEER, PEER]


async def test_unknown_key_triggers_one_refetch(store: Store) -> None:
    peer, clock = Peer(), Clock()
    fetcher = Fetcher(peer)
    keyring = make_keyring(store, fetcher, clock)
    await keyring.verify_json(PEER, peer.sign({"x": 1}))
    # The peer rotates to a new key; a signature by it makes us refetch.
    rotated = generate_signing_key("p2")
    peer.extra_current = [rotated]
    signed = sign_json({"y": 2}, PEER, rotated)
    clock.now += REFETCH_INTERVAL_MS
    await keyring.verify_json(PEER, signed)
    assert fetcher.calls == [PEER, PEER]
    # A garbage key ID within the interval does not cause another fetch.
    junk = {"signatures": {PEER: {"ed25519:nope": "AAAA"}}}
    with pytest.raises(SignatureVerifyError):
        await keyring.verify_json(PEER, junk)
    assert fetcher.calls == [PEER, PEER]


async def test_concurrent_lookups_share_one_fetch(store: Store) -> None:
    peer = Peer()
    fetcher = Fetcher(peer)
    fetcher.gate = asyncio.Event()
    keyring = make_keyring(store, fetcher, Clock())
    signed = peer.sign({"z": 1})
    tasks = [asyncio.create_task(keyring.verify_json(PEER, signed)) for _ in range(5)]
    await asyncio.sleep(0.05)
    fetcher.gate.set()
    await asyncio.gather(*tasks)
    assert fetcher.calls == [PEER]


async def test_unreachable_server(store: Store) -> None:
    keyring = make_keyring(store, Fetcher(), Clock())
    with pytest.raises(SignatureVerifyError, match="no valid key"):
        await keyring.verify_json(
            "gone.example", {"signatures": {"gone.example": {"ed25519:a": "x"}}}
        )


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(server_name="other.example"), "names"),
        (lambda d: d.pop("valid_until_ts"), "valid_until_ts"),
        (lambda d: d.update(verify_keys={}), "verify_keys"),
        (lambda d: d.update(signatures={}), "not signed"),
        (lambda d: d.update(valid_until_ts=d["valid_until_ts"] + 1), "self-signature invalid"),
    ],
)
def test_parse_key_response_rejects(mutate: Any, reason: str) -> None:
    document = Peer().document()
    mutate(document)
    with pytest.raises(SignatureVerifyError, match=reason):
        parse_key_response(PEER, document, NOW)


@pytest.mark.parametrize(("current", "old", "accepted"), [(1, 99, True), (1, 100, False)])
def test_parse_key_response_bounds_the_number_of_keys(
    current: int, old: int, accepted: bool
) -> None:
    """Every listed key becomes a stored row and a cache entry: a server listing thousands is
    refused rather than stored."""
    peer = Peer()
    peer.extra_current = [generate_signing_key(f"x{i}") for i in range(current - 1)]
    key = encode_base64(bytes(get_verify_key(generate_signing_key("o"))))
    peer.old = {f"ed25519:o{i}": {"key": key, "expired_ts": NOW} for i in range(old)}
    if accepted:
        keys, _ = parse_key_response(PEER, peer.document(), NOW)
        assert len(keys) == current + old
    else:
        with pytest.raises(SignatureVerifyError, match="too many keys"):
            parse_key_response(PEER, peer.document(), NOW)


def test_parse_key_response_ignores_signatures_by_unlisted_keys() -> None:
    peer = Peer()
    document = peer.document()
    document["signatures"][PEER]["ed25519:unlisted"] = "garbage"
    keys, _ = parse_key_response(PEER, document, NOW)
    assert [k.key_id for k in keys] == ["ed25519:p1"]


async def test_forged_response_is_not_stored(store: Store) -> None:
    peer, impostor = Peer(), Peer(version="p1")
    fetcher = Fetcher(peer)
    # Claims the peer's name but signed by another key.
    fetcher.override[PEER] = impostor.document()
    fetcher.override[PEER]["signatures"][PEER]["ed25519:p1"] = peer.document()["signatures"][PEER][
        "ed25519:p1"
    ]
    keyring = make_keyring(store, fetcher, Clock())
    with pytest.raises(SignatureVerifyError):
        await keyring.verify_json(PEER, impostor.sign({}))
    assert await store.keys.get_server_keys(PEER) == {}


async def test_our_own_keys_are_local(store: Store) -> None:
    old_key = generate_signing_key("old")
    old = OldVerifyKey("ed25519:old", encode_base64(bytes(get_verify_key(old_key))), NOW - HOUR)

    class NoNetwork:
        async def get_server_keys(self, destination: str) -> dict[str, Any]:
            raise AssertionError("our own keys must not be fetched")

    keyring = make_keyring(store, NoNetwork(), Clock(), old_signing_keys=[old])
    await keyring.verify_json(OUR_NAME, sign_json({"a": 1}, OUR_NAME, OUR_KEY), valid_at_ts=NOW)
    by_old = sign_json({"a": 1}, OUR_NAME, old_key)
    await keyring.verify_json(OUR_NAME, by_old, valid_at_ts=NOW - 2 * HOUR)
    with pytest.raises(SignatureVerifyError):
        await keyring.verify_json(OUR_NAME, by_old, valid_at_ts=NOW)


# --- events -------------------------------------------------------------------------------


def make_event(
    version: RoomVersion, signers: list[tuple[str, Any]], *, ts: int = NOW, **fields: Any
) -> Event:
    pdu: dict[str, Any] = {
        "type": "m.room.message",
        "room_id": "!room:peer.example",
        "sender": f"@alice:{PEER}",
        "content": {"body": "hi"},
        "depth": 5,
        "origin_server_ts": ts,
        "prev_events": [],
        "auth_events": [],
    }
    if version.event_id_format.name == "OPAQUE_WITH_DOMAIN":
        pdu["event_id"] = f"$ev:{PEER}"
    pdu.update(fields)
    add_content_hash(pdu)
    for server_name, key in signers:
        sign_event(version, pdu, server_name, key)
    return Event(pdu, version)


V1, V4, V5, V8, V12 = (KNOWN_ROOM_VERSIONS[v] for v in ("1", "4", "5", "8", "12"))


async def test_verify_event_good_and_bad(store: Store) -> None:
    peer = Peer()
    keyring = make_keyring(store, Fetcher(peer), Clock())
    for version in KNOWN_ROOM_VERSIONS.values():
        event = make_event(version, [(PEER, peer.key)])
        await keyring.verify_event(event)
        # Signed by the wrong server's key → refused.
        other = make_event(version, [(PEER, generate_signing_key("p1"))])
        with pytest.raises(SignatureVerifyError):
            await keyring.verify_event(other)


async def test_signature_survives_redaction_but_not_tampering(store: Store) -> None:
    peer = Peer()
    keyring = make_keyring(store, Fetcher(peer), Clock())
    event = make_event(V12, [(PEER, peer.key)])
    # Content is redacted away before checking: changing it keeps the signature valid (the
    # content hash, not the signature, catches that).
    event.pdu["content"] = {"body": "changed"}
    await keyring.verify_event(event)
    event.pdu["sender"] = f"@mallory:{PEER}"
    with pytest.raises(SignatureVerifyError):
        await keyring.verify_event(Event(event.pdu, V12))


async def test_v1_requires_the_event_id_server(store: Store) -> None:
    peer, third = Peer(), Peer(name="third.example", version="t1")
    keyring = make_keyring(store, Fetcher(peer, third), Clock())
    fields = {"event_id": "$ev:third.example"}
    only_sender = make_event(V1, [(PEER, peer.key)], **fields)
    with pytest.raises(SignatureVerifyError, match=r"third\.example"):
        await keyring.verify_event(only_sender)
    both = make_event(V1, [(PEER, peer.key), ("third.example", third.key)], **fields)
    await keyring.verify_event(both)
    assert Keyring.required_servers(both) == [PEER, "third.example"]


@pytest.mark.parametrize(
    ("version", "accepted"), [(V4, True), (V5, False), (V12, False)], ids=["v4", "v5", "v12"]
)
async def test_key_validity_at_origin_server_ts(
    store: Store, version: RoomVersion, accepted: bool
) -> None:
    peer, clock = Peer(), Clock()
    peer.valid_until_ts = NOW + HOUR
    keyring = make_keyring(store, Fetcher(peer), clock)
    # An event claiming a time after the key's validity.
    event = make_event(version, [(PEER, peer.key)], ts=NOW + 2 * HOUR)
    if accepted:
        await keyring.verify_event(event)
    else:
        with pytest.raises(SignatureVerifyError):
            await keyring.verify_event(event)
    # Inside the validity it is fine for every version.
    await keyring.verify_event(make_event(version, [(PEER, peer.key)], ts=NOW + HOUR))


async def test_old_verify_keys_valid_until_expired_ts(store: Store) -> None:
    peer = Peer()
    retired = generate_signing_key("retired")
    peer.old = {
        "ed25519:retired": {
            "key": encode_base64(bytes(get_verify_key(retired))),
            "expired_ts": NOW - HOUR,
        }
    }
    keyring = make_keyring(store, Fetcher(peer), Clock())
    before = make_event(V12, [(PEER, retired)], ts=NOW - 2 * HOUR)
    await keyring.verify_event(before)
    after = make_event(V12, [(PEER, retired)], ts=NOW)
    with pytest.raises(SignatureVerifyError):
        await keyring.verify_event(after)
    # v4 ignores validity.
    await keyring.verify_event(make_event(V4, [(PEER, retired)], ts=NOW))


async def test_restricted_join_needs_the_authorising_server(store: Store) -> None:
    peer, resident = Peer(), Peer(name="resident.example", version="r1")
    keyring = make_keyring(store, Fetcher(peer, resident), Clock())
    fields = {
        "type": "m.room.member",
        "state_key": f"@alice:{PEER}",
        "content": {
            "membership": "join",
            "join_authorised_via_users_server": "@admin:resident.example",
        },
    }
    join = make_event(V8, [(PEER, peer.key)], **fields)
    with pytest.raises(SignatureVerifyError, match=r"resident\.example"):
        await keyring.verify_event(join)
    await keyring.verify_event(join, check_authorising_server=False)
    both = make_event(V8, [(PEER, peer.key), ("resident.example", resident.key)], **fields)
    await keyring.verify_event(both)


async def test_over_https_with_a_real_peer(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    config = make_config(
        tmp_path, federation_verify_certificates=False, ip_range_whitelist=LOOPBACK_WHITELIST
    )
    client = FederationClient(OUR_NAME, OUR_KEY, config.federation, clock=clock)
    try:
        async with FakeRemoteServer(tmp_path) as remote:
            keyring = Keyring(store.keys, client, clock, OUR_NAME, OUR_KEY)
            event = remote.sign_pdu(
                V12,
                {
                    "type": "m.room.message",
                    "room_id": "!r",
                    "sender": f"@bob:{remote.server_name}",
                    "content": {},
                    "depth": 1,
                    "origin_server_ts": NOW,
                    "prev_events": [],
                    "auth_events": [],
                },
            )
            await keyring.verify_event(Event(event, V12))
            assert len(remote.requests_to("/_matrix/key/v2/server")) == 1
    finally:
        await client.close()


class CountingKeyStore:
    """The store's key table, counting reads (to see cache hits and misses)."""

    def __init__(self, store: Store) -> None:
        self.inner = store.keys
        self.reads: list[str] = []

    async def store_server_keys(self, keys: Any) -> None:
        await self.inner.store_server_keys(keys)

    async def get_server_keys(self, server_name: str, key_ids: Any = None) -> Any:
        self.reads.append(server_name)
        return await self.inner.get_server_keys(server_name, key_ids)


async def test_key_cache_is_bounded_in_size(store: Store) -> None:
    peers = [Peer(f"s{i}.example") for i in range(4)]
    keys = CountingKeyStore(store)
    clock = Clock()
    keyring = Keyring(keys, Fetcher(*peers), clock, OUR_NAME, OUR_KEY, cache_size=3)
    for peer in peers:
        await keyring.verify_json(peer.name, peer.sign({}), valid_at_ts=NOW)
    assert len(keyring._key_cache) == 3
    assert len(keyring._responses) == 3
    keys.reads.clear()
    await keyring.verify_json(peers[3].name, peers[3].sign({}), valid_at_ts=NOW)
    assert keys.reads == []  # cached
    await keyring.verify_json(peers[0].name, peers[0].sign({}), valid_at_ts=NOW)
    assert keys.reads == [peers[0].name]  # evicted: read from the store again


async def test_expired_cache_entries_are_fetched_again(store: Store) -> None:
    peer, clock = Peer(), Clock()
    peer.valid_until_ts = NOW + 30 * 24 * HOUR
    keys = CountingKeyStore(store)
    fetcher = Fetcher(peer)
    keyring = Keyring(keys, fetcher, clock, OUR_NAME, OUR_KEY, cache_ttl_ms=HOUR)
    assert await keyring.key_response(PEER, NOW) is not None
    await keyring.verify_json(PEER, peer.sign({}), valid_at_ts=NOW)
    keys.reads.clear()
    clock.now += HOUR
    # The notary copy is gone: fetched again; the key cache entry is gone: read again.
    assert await keyring.key_response(PEER, NOW) is not None
    assert fetcher.calls == [PEER, PEER]
    await keyring.verify_json(PEER, peer.sign({}), valid_at_ts=NOW)
    assert keys.reads == [PEER]
    assert len(keyring._last_fetch_ms) <= 1


class ReadAfterFetchStore:
    """The key table, whose next read of ``held_server`` returns what it found and then waits
    for ``release``: a lookup that read the table just before a fetch stored the keys."""

    def __init__(self, inner: Any, held_server: str) -> None:
        self.inner = inner
        self.held_server = held_server
        self.read_done = asyncio.Event()
        self.release = asyncio.Event()
        self.holding = False

    async def store_server_keys(self, keys: Any) -> None:
        await self.inner.store_server_keys(keys)

    async def get_server_keys(self, server_name: str, key_ids: Any = None) -> Any:
        found = await self.inner.get_server_keys(server_name, key_ids)
        if self.holding and server_name == self.held_server:
            self.holding = False
            self.read_done.set()
            await self.release.wait()
        return found


async def test_a_lookup_that_read_before_a_fetch_finished_sees_its_keys(store: Store) -> None:
    """A lookup whose table read missed while another caller's fetch was storing the keys must
    not fail with "no valid key" because the refetch interval forbids a fetch of its own (a
    real Synapse's make_join was refused this way right after our invite fetched its keys)."""
    peer = Peer()
    fetcher = Fetcher(peer)
    fetcher.gate = asyncio.Event()
    table = ReadAfterFetchStore(store.keys, PEER)
    keyring = Keyring(table, fetcher, Clock(), OUR_NAME, OUR_KEY)
    signed = peer.sign({"z": 1})
    first = asyncio.create_task(keyring.verify_json(PEER, signed))
    while not fetcher.calls:  # the first lookup's fetch has started (and waits at the gate)
        await asyncio.sleep(0)
    table.holding = True
    second = asyncio.create_task(keyring.verify_json(PEER, signed))
    await table.read_done.wait()  # the second lookup read the table: nothing there yet
    fetcher.gate.set()
    await first  # the fetch stored the keys and ended
    table.release.set()
    await second
    assert fetcher.calls == [PEER]
