"""Users, tokens, devices, server keys and the federation outbox."""

from __future__ import annotations

from homeserver.storage import Store
from homeserver.storage.keys import ServerKey
from homeserver.storage.users import hash_access_token

ALICE = "@alice:example.org"


async def test_users_and_tokens(store: Store) -> None:
    users = store.users
    assert await users.create_user(ALICE, "$argon2id$hash", created_ts=10, admin=True)
    assert not await users.create_user(ALICE, "other", created_ts=11)
    user = await users.get_user(ALICE)
    assert user is not None
    assert (user.password_hash, user.admin, user.created_ts, user.deactivated) == (
        "$argon2id$hash",
        True,
        10,
        False,
    )
    assert await users.get_user("@nobody:x") is None
    assert await users.count_users() == 1

    token = "syt_secret_token"
    token_hash = hash_access_token(token)
    assert len(token_hash) == 64 and token not in token_hash
    await users.upsert_device(ALICE, "DEV1", "phone")
    await users.add_access_token(token_hash, ALICE, "DEV1", created_ts=20)
    owner = await users.get_token_owner(token_hash)
    assert owner is not None
    assert (owner.user_id, owner.device_id, owner.admin, owner.deactivated) == (
        ALICE,
        "DEV1",
        True,
        False,
    )
    assert await users.get_token_owner(hash_access_token("wrong")) is None
    # Only the hash is stored.
    stored = [r[0] for r in await store.db.fetchall("SELECT token_hash FROM access_tokens")]
    assert stored == [token_hash]

    await users.touch_access_token(token_hash, 30)
    assert await store.db.fetchval("SELECT last_used FROM access_tokens") == 30
    assert await users.delete_access_token(token_hash)
    assert await users.get_token_owner(token_hash) is None
    assert not await users.delete_access_token(token_hash)


async def test_devices_and_deactivation(store: Store) -> None:
    users = store.users
    await users.create_user(ALICE, "h", created_ts=1)
    await users.upsert_device(ALICE, "A", "laptop")
    await users.upsert_device(ALICE, "A")  # a login without a name keeps the old one
    await users.upsert_device(ALICE, "B", "phone")
    assert [(d.device_id, d.display_name) for d in await users.get_devices(ALICE)] == [
        ("A", "laptop"),
        ("B", "phone"),
    ]
    await users.add_access_token("h1", ALICE, "A", created_ts=1)
    await users.add_access_token("h2", ALICE, "B", created_ts=1)
    await users.add_access_token("h3", ALICE, "B", created_ts=1)
    assert await users.delete_device(ALICE, "A")
    assert await users.get_token_owner("h1") is None
    assert await users.delete_access_tokens_for_user(ALICE, except_token_hash="h2") == 1
    assert await users.get_token_owner("h2") is not None
    assert await users.set_password_hash(ALICE, "new")
    assert await users.set_admin(ALICE, True)
    assert await users.deactivate_user(ALICE)
    user = await users.get_user(ALICE)
    assert user is not None and user.deactivated and user.password_hash is None
    assert await users.get_token_owner("h2") is None
    assert await users.get_devices(ALICE) == []


async def test_server_keys(store: Store) -> None:
    keys = store.keys
    k1 = ServerKey("remote.org", "ed25519:a", b"\x01" * 32, valid_until_ts=1000, fetched_ts=1)
    k2 = ServerKey("remote.org", "ed25519:b", b"\x02" * 32, valid_until_ts=2000, fetched_ts=1)
    await keys.store_server_keys([k1, k2])
    assert await keys.get_server_keys("remote.org") == {"ed25519:a": k1, "ed25519:b": k2}
    assert await keys.get_server_keys("remote.org", ["ed25519:b", "ed25519:z"]) == {"ed25519:b": k2}
    assert await keys.get_server_keys("remote.org", []) == {}
    assert await keys.get_server_keys("other.org") == {}
    # A refetch updates fetched_ts and extends validity, but never shortens it.
    await keys.store_server_keys(
        [
            ServerKey("remote.org", "ed25519:a", b"\x01" * 32, valid_until_ts=5000, fetched_ts=2),
            ServerKey("remote.org", "ed25519:b", b"\x02" * 32, valid_until_ts=100, fetched_ts=2),
        ]
    )
    got = await keys.get_server_keys("remote.org")
    assert (got["ed25519:a"].valid_until_ts, got["ed25519:a"].fetched_ts) == (5000, 2)
    assert got["ed25519:b"].valid_until_ts == 2000


async def test_outbox(store: Store) -> None:
    outbox = store.outbox
    async with store.db.transaction("enqueue") as txn:
        first = await outbox.enqueue_txn(txn, "a.org", {"pdu": 1}, now=100)
        second = await outbox.enqueue_txn(txn, "b.org", {"pdu": 2}, now=100)
    due = await outbox.get_due(now=100)
    assert [(e.id, e.destination, e.payload, e.attempts) for e in due] == [
        (first, "a.org", {"pdu": 1}, 0),
        (second, "b.org", {"pdu": 2}, 0),
    ]
    await outbox.reschedule([first], next_attempt_ts=500)
    assert [e.id for e in await outbox.get_due(now=200)] == [second]
    retried = await outbox.get_due(now=500)
    assert retried[0].attempts == 1
    await outbox.delete([first, second])
    assert await outbox.get_due(now=10_000) == []
