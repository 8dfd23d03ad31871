"""Writers that lock the same rows from two processes at once (two pools on one database), in
opposite request orders: each takes the rows in one global order, so they queue behind each other
instead of deadlocking. On PostgreSQL a deadlock fails a plain transaction and costs a retried one
about a second (``deadlock_timeout``), hence the retry counts of zero; SQLite, with one writer,
only checks the outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from homeserver.accounts.device_removal import DeviceRemoval
from homeserver.accounts.sessions import DeviceRequest, issue_session
from homeserver.storage import Store
from homeserver.storage.account_data import GLOBAL
from homeserver.storage.client_ips import ClientIpEntry
from homeserver.storage.keys import ServerKey
from tests.conftest import OpenTestDatabase

ALICE = "@alice:example.org"
DEVICES = [f"DEV{i}" for i in range(7)]
ALG = "signed_curve25519"
T = TypeVar("T")
#: Rounds of a race whose loser deadlocks only if it meets the flush mid-way through the
#: devices' rows: it starts STEP seconds later each round, so some round does.
ROUNDS, STEP = 12, 0.001


async def _two_stores(store: Store, open_test_database: OpenTestDatabase) -> tuple[Store, Store]:
    return store, Store(await open_test_database())


def _assert_no_retries(stores: tuple[Store, Store], *names: str) -> None:
    for name in names:
        ran = [s.db.stats[name] for s in stores if name in s.db.stats]
        assert ran, name
        for stats in ran:
            assert (name, stats.retries, stats.failures) == (name, 0, 0)


async def _alice_with_tokens(store: Store, prefix: str, count: int = 24) -> list[ClientIpEntry]:
    """Alice's devices, ``count`` new tokens spread over them, and a flush batch using each."""
    if await store.users.get_user(ALICE) is None:
        await store.users.create_user(ALICE, "h", created_ts=1)
    entries: list[ClientIpEntry] = []
    for n in range(count):
        token_hash, device_id = f"{prefix}{n:02}", DEVICES[n % len(DEVICES)]
        await store.users.upsert_device(ALICE, device_id)
        await store.users.add_access_token(token_hash, ALICE, device_id, created_ts=1)
        entries.append(ClientIpEntry(ALICE, token_hash, device_id, "10.0.0.1", "agent", 1_000 + n))
    return entries


async def test_claims_of_the_same_devices_in_opposite_orders_do_not_deadlock(
    store: Store, open_test_database: OpenTestDatabase
) -> None:
    stores = await _two_stores(store, open_test_database)
    users = [f"@u{i}:example.org" for i in range(4)]
    rounds = 5
    async with store.db.transaction("t") as txn:
        for user_id in users:
            for device_id in DEVICES[:4]:
                keys = [(ALG, f"K{n:02}", f'{{"n":{n}}}') for n in range(2 * rounds)]
                await store.e2e_keys.add_one_time_keys_txn(txn, user_id, device_id, keys, 1)
    forward = {u: dict.fromkeys(DEVICES[:4], ALG) for u in users}
    backward = {u: dict.fromkeys(reversed(DEVICES[:4]), ALG) for u in reversed(users)}

    claimed: list[tuple[str, str, str]] = []
    for _ in range(rounds):
        results = await asyncio.gather(
            stores[0].e2e_keys.claim_one_time_keys(forward),
            stores[1].e2e_keys.claim_one_time_keys(backward),
        )
        claimed += [
            (u, d, key_id)
            for result in results
            for u, devices in result.items()
            for d, key in devices.items()
            for key_id in key
        ]

    _assert_no_retries(stores, "claim_one_time_keys")
    # Every key handed out once, none left.
    assert len(claimed) == len(set(claimed)) == len(users) * 4 * 2 * rounds


async def test_login_on_a_known_device_while_its_tokens_uses_are_flushed(
    store: Store, open_test_database: OpenTestDatabase
) -> None:
    """A login on an existing device drops the device's old tokens while another process's
    client-IP flush updates the device and those tokens."""
    stores = await _two_stores(store, open_test_database)
    for round_ in range(5):
        batch = await _alice_with_tokens(store, f"r{round_}t")
        logins = [
            issue_session(store, ALICE, DeviceRequest(device_id), now=10)
            for device_id in reversed(DEVICES)
        ]
        *sessions, _ = await asyncio.gather(*logins, stores[1].client_ips.record(batch))
        assert sorted(s.device_id for s in sessions) == DEVICES

    _assert_no_retries(stores, "issue_login_session", "record_client_ips")
    # Only each device's newest login is left.
    assert await store.db.fetchval("SELECT COUNT(*) FROM access_tokens") == len(DEVICES)


async def _after(delay: float, work: Awaitable[T]) -> T:
    await asyncio.sleep(delay)
    return await work


@pytest.mark.parametrize("removal", ["delete_devices", "deactivate_user"])
async def test_removing_devices_while_their_uses_are_flushed(
    store: Store, open_test_database: OpenTestDatabase, removal: str
) -> None:
    """A user's devices removed (one request naming them in reverse, or the whole account
    deactivated) while another process flushes their tokens' uses."""
    stores = await _two_stores(store, open_test_database)
    removals = {
        "delete_devices": lambda: DeviceRemoval(store, "example.org", lambda: 10).delete_devices(
            ALICE, list(reversed(DEVICES))
        ),
        "deactivate_user": lambda: store.users.deactivate_user(ALICE),
    }
    for round_ in range(ROUNDS):
        batch = await _alice_with_tokens(store, f"r{round_}t", len(DEVICES))
        await asyncio.gather(
            _after(round_ * STEP, removals[removal]()), stores[1].client_ips.record(batch)
        )
        assert await store.users.get_devices(ALICE) == []

    _assert_no_retries(stores, removal, "record_client_ips")
    assert await store.db.fetchval("SELECT COUNT(*) FROM access_tokens") == 0


async def test_upgrades_copying_the_same_members_data_do_not_deadlock(
    store: Store, open_test_database: OpenTestDatabase
) -> None:
    """Two upgrades (or joins) of different rooms sharing members, committing at once. Each
    member's copy takes that member's account-data lock; the members one room copies tags for
    are the ones the other copies m.direct for."""
    stores = await _two_stores(store, open_test_database)
    users = [f"@u{i}:example.org" for i in range(10)]
    first, second = users[:5], users[5:]
    old = ["!old1:example.org", "!old2:example.org"]
    for user_id in first:
        await store.account_data.set_account_data(user_id, old[0], "m.tag", {"tags": {"a": {}}})
        await store.account_data.set_account_data(
            user_id, GLOBAL, "m.direct", {"@f:example.org": [old[1]]}
        )
    for user_id in second:
        await store.account_data.set_account_data(user_id, old[1], "m.tag", {"tags": {"b": {}}})
        await store.account_data.set_account_data(
            user_id, GLOBAL, "m.direct", {"@f:example.org": [old[0]]}
        )

    for round_ in range(3):
        new = [f"!new1r{round_}:example.org", f"!new2r{round_}:example.org"]
        changed = await asyncio.gather(
            *(
                s.db.run_in_transaction(
                    "copy_member_data", s.upgrades.copy_member_data_txn, o, n, users
                )
                for s, o, n in zip(stores, old, new, strict=True)
            )
        )
        assert changed == [len(users), len(users)]
        for user_id in first:
            tags = await store.account_data.get_account_data(user_id, new[0], "m.tag")
            assert tags == {"tags": {"a": {}}}
        # A second-half member's m.direct named the first old room: each new one is added.
        direct = await store.account_data.get_account_data(second[0], GLOBAL, "m.direct")
        copies = [f"!new1r{r}:example.org" for r in range(round_ + 1)]
        assert direct == {"@f:example.org": [old[0], *copies]}

    _assert_no_retries(stores, "copy_member_data")


async def test_processes_storing_the_same_server_keys_at_once_do_not_deadlock(
    store: Store, open_test_database: OpenTestDatabase
) -> None:
    stores = await _two_stores(store, open_test_database)
    keys = [ServerKey("remote.example", f"ed25519:k{n:02}", bytes(32), 5_000, 1) for n in range(30)]
    for _ in range(5):
        await asyncio.gather(
            stores[0].keys.store_server_keys(keys),
            stores[1].keys.store_server_keys(list(reversed(keys))),
        )
    _assert_no_retries(stores, "store_server_keys")
    assert len(await store.keys.get_server_keys("remote.example")) == len(keys)
