"""The end-to-end encryption stores on both engines: keys, claims, fallback keys, signatures,
device-list changes, the to-device inbox and the remote device-list cache."""

from __future__ import annotations

import asyncio

from homeserver.storage import Store
from homeserver.storage.e2e_keys import Signature

ALICE = "@alice:example.org"
BOB = "@bob:example.org"


async def _user_with_devices(store: Store, user_id: str, *devices: str) -> None:
    await store.users.create_user(user_id, None, created_ts=1)
    for device in devices:
        await store.users.upsert_device(user_id, device, f"{device} name")


async def test_device_keys_only_for_existing_devices(store: Store) -> None:
    await _user_with_devices(store, ALICE, "D1", "D2")
    async with store.db.transaction("t") as txn:
        await store.e2e_keys.set_device_keys_txn(txn, ALICE, "D1", {"k": 1}, 5)
        await store.e2e_keys.set_device_keys_txn(txn, ALICE, "D2", {"k": 2}, 5)
        await store.e2e_keys.set_device_keys_txn(txn, ALICE, "GONE", {"k": 3}, 5)
    every = await store.e2e_keys.get_device_keys({ALICE: []})
    assert {d: k.keys for d, k in every[ALICE].items()} == {"D1": {"k": 1}, "D2": {"k": 2}}
    assert every[ALICE]["D1"].display_name == "D1 name"
    one = await store.e2e_keys.get_device_keys({ALICE: ["D2", "NOPE"], BOB: []})
    assert list(one) == [ALICE] and list(one[ALICE]) == ["D2"]


async def test_one_time_keys_claimed_once_oldest_first_then_fallback(store: Store) -> None:
    await _user_with_devices(store, ALICE, "D1")
    keys = store.e2e_keys
    async with store.db.transaction("t") as txn:
        await keys.add_one_time_keys_txn(
            txn, ALICE, "D1", [("signed_curve25519", "B", '{"key":"b"}')], now=2
        )
        await keys.add_one_time_keys_txn(
            txn, ALICE, "D1", [("signed_curve25519", "A", '{"key":"a"}')], now=3
        )
        found = await keys.get_one_time_keys_txn(
            txn, ALICE, "D1", [("signed_curve25519", "A"), ("curve25519", "A")]
        )
        assert found == {("signed_curve25519", "A"): '{"key":"a"}'}
    assert await keys.count_one_time_keys(ALICE, "D1") == {"signed_curve25519": 2}
    query = {ALICE: {"D1": "signed_curve25519"}}
    assert await keys.claim_one_time_keys(query) == {
        ALICE: {"D1": {"signed_curve25519:B": {"key": "b"}}}
    }
    assert await keys.claim_one_time_keys(query) == {
        ALICE: {"D1": {"signed_curve25519:A": {"key": "a"}}}
    }
    assert await keys.claim_one_time_keys(query) == {}
    async with store.db.transaction("t") as txn:
        await keys.set_fallback_key_txn(txn, ALICE, "D1", "signed_curve25519", "F", '{"key":"f"}')
    assert await keys.get_unused_fallback_key_types(ALICE, "D1") == ["signed_curve25519"]
    for _ in range(2):  # the fallback key is handed out again and again, marked used
        assert await keys.claim_one_time_keys(query) == {
            ALICE: {"D1": {"signed_curve25519:F": {"key": "f"}}}
        }
    assert await keys.get_unused_fallback_key_types(ALICE, "D1") == []
    async with store.db.transaction("t") as txn:  # the same key again stays used
        await keys.set_fallback_key_txn(txn, ALICE, "D1", "signed_curve25519", "F", '{"key":"f"}')
    assert await keys.get_unused_fallback_key_types(ALICE, "D1") == []
    async with store.db.transaction("t") as txn:  # a new one is unused
        await keys.set_fallback_key_txn(txn, ALICE, "D1", "signed_curve25519", "G", '{"key":"g"}')
    assert await keys.get_unused_fallback_key_types(ALICE, "D1") == ["signed_curve25519"]


async def test_concurrent_claims_never_share_a_key(store: Store) -> None:
    await _user_with_devices(store, ALICE, "D1")
    async with store.db.transaction("t") as txn:
        await store.e2e_keys.add_one_time_keys_txn(
            txn, ALICE, "D1", [("signed_curve25519", f"K{i}", f'{{"n":{i}}}') for i in range(6)], 1
        )
    query = {ALICE: {"D1": "signed_curve25519"}}
    results = await asyncio.gather(*(store.e2e_keys.claim_one_time_keys(query) for _ in range(8)))
    claimed = [next(iter(r[ALICE]["D1"])) for r in results if r]
    assert len(claimed) == 6 and len(set(claimed)) == 6


async def test_device_deletion_removes_everything_of_that_device(store: Store) -> None:
    await _user_with_devices(store, ALICE, "D1", "D2")
    keys = store.e2e_keys
    async with store.db.transaction("t") as txn:
        for device in ("D1", "D2"):
            await keys.set_device_keys_txn(txn, ALICE, device, {"d": device}, 1)
            await keys.add_one_time_keys_txn(txn, ALICE, device, [("a", "1", "{}")], 1)
            await keys.set_fallback_key_txn(txn, ALICE, device, "a", "f", "{}")
            await store.device_inbox.add_messages_txn(txn, [(ALICE, device, {"type": "x"})])
        await keys.add_signatures_txn(txn, [Signature(ALICE, "ed25519:SSK", ALICE, "D1", "sig")])
    async with store.db.transaction("t") as txn:
        assert await store.users.delete_device_txn(txn, ALICE, "D1")
        await keys.delete_device_keys_txn(txn, ALICE, "D1")
    assert list((await keys.get_device_keys({ALICE: []}))[ALICE]) == ["D2"]
    assert await keys.count_one_time_keys(ALICE, "D1") == {}
    assert await keys.get_unused_fallback_key_types(ALICE, "D1") == []
    assert await keys.get_signatures([(ALICE, "D1")]) == {}
    assert await store.device_inbox.get_messages(ALICE, "D1", 0, 10**9, 10) == []
    assert len(await store.device_inbox.get_messages(ALICE, "D2", 0, 10**9, 10)) == 1


async def test_cross_signing_keys_and_signatures(store: Store) -> None:
    keys = store.e2e_keys
    async with store.db.transaction("t") as txn:
        await keys.set_cross_signing_key_txn(txn, ALICE, "master", {"m": 1}, 1)
        await keys.set_cross_signing_key_txn(txn, ALICE, "master", {"m": 2}, 2)
        await keys.set_cross_signing_key_txn(txn, ALICE, "self_signing", {"s": 1}, 2)
        await keys.add_signatures_txn(
            txn,
            [
                Signature(BOB, "ed25519:USK", ALICE, "MPUB", "s1"),
                Signature(BOB, "ed25519:USK", ALICE, "MPUB", "s2"),
                Signature(ALICE, "ed25519:D1", ALICE, "MPUB", "s3"),
            ],
        )
    assert await keys.get_cross_signing_keys([ALICE, BOB]) == {
        ALICE: {"master": {"m": 2}, "self_signing": {"s": 1}}
    }
    assert await keys.get_signatures([(ALICE, "MPUB"), (ALICE, "OTHER")]) == {
        (ALICE, "MPUB"): {BOB: {"ed25519:USK": "s2"}, ALICE: {"ed25519:D1": "s3"}}
    }


async def test_device_list_changes_and_positions(store: Store) -> None:
    lists = store.device_lists
    start = await lists.get_position()
    async with store.db.transaction("t") as txn:
        first = await lists.add_change_txn(txn, ALICE, ["D1", "D2"])
        second = await lists.add_change_txn(txn, BOB, [])
        third = await lists.add_change_txn(txn, ALICE, ["D1"])
        assert await lists.get_user_last_position_txn(txn, ALICE, third) == first
        assert await lists.get_user_last_position_txn(txn, ALICE, first) is None
    assert start < first < second < third == await lists.get_position()
    assert await lists.get_user_position(ALICE) == third
    assert await lists.get_user_position("@nobody:x") == 0
    assert await lists.get_changed_users(start, third) == {ALICE, BOB}
    assert await lists.get_changed_users(first, second) == {BOB}
    assert await lists.get_changed_users(start, third, among=[BOB, "@c:x"]) == {BOB}
    assert await lists.get_changed_users(third, third) == set()


async def test_to_device_inbox_and_once_only_ids(store: Store) -> None:
    inbox = store.device_inbox
    async with store.db.transaction("t") as txn:
        p1 = await inbox.add_messages_txn(txn, [(ALICE, "D1", {"n": 1}), (ALICE, "D2", {"n": 2})])
        p2 = await inbox.add_messages_txn(txn, [(ALICE, "D1", {"n": 3})])
        assert await inbox.record_txn_id_txn(txn, BOB, "B1", "t1", 10)
        assert not await inbox.record_txn_id_txn(txn, BOB, "B1", "t1", 11)
        assert await inbox.record_txn_id_txn(txn, BOB, "B2", "t1", 11)
        assert await inbox.record_received_message_txn(txn, "other.org", "m1", 10)
        assert not await inbox.record_received_message_txn(txn, "other.org", "m1", 10)
    assert p2 == await inbox.get_position()
    assert await inbox.get_messages(ALICE, "D1", 0, p2, 10) == [(p1, {"n": 1}), (p2, {"n": 3})]
    assert await inbox.get_messages(ALICE, "D1", 0, p2, 1) == [(p1, {"n": 1})]
    assert await inbox.get_messages(ALICE, "D1", p1, p1, 10) == []
    assert await inbox.delete_messages_upto(ALICE, "D1", p1) == 1
    assert await inbox.get_messages(ALICE, "D1", 0, p2, 10) == [(p2, {"n": 3})]
    await inbox.prune(older_than_ts=11)
    async with store.db.transaction("t") as txn:
        assert await inbox.record_txn_id_txn(txn, BOB, "B1", "t1", 12)
        assert not await inbox.record_txn_id_txn(txn, BOB, "B2", "t1", 12)
        assert await inbox.record_received_message_txn(txn, "other.org", "m1", 12)


async def test_remote_device_list_cache(store: Store) -> None:
    remote = store.remote_device_lists
    carol = "@carol:remote.org"
    assert await remote.get(carol) is None
    await remote.replace(carol, 7, {"C1": {"device_id": "C1"}}, {"master": {"m": 1}})
    cached = await remote.get(carol)
    assert cached is not None and (cached.stream_id, cached.stale) == (7, False)
    assert cached.devices == {"C1": {"device_id": "C1"}}
    assert await store.e2e_keys.get_cross_signing_keys([carol]) == {carol: {"master": {"m": 1}}}
    async with store.db.transaction("t") as txn:
        await remote.update_device_txn(txn, carol, "C2", {"device_id": "C2"}, 8)
        await remote.update_device_txn(txn, carol, "C1", None, 9)
        assert await remote.get_position_txn(txn, carol) == 9
    cached = await remote.get(carol)
    assert cached is not None and cached.stream_id == 9 and list(cached.devices) == ["C2"]
    await remote.mark_stale(carol)
    async with store.db.transaction("t") as txn:
        assert await remote.get_position_txn(txn, carol) is None
    await remote.mark_stale("@dave:remote.org")
    stale = await remote.get("@dave:remote.org")
    assert stale is not None and stale.stale and stale.devices == {}
    await remote.forget(carol)
    assert await remote.get(carol) is None
