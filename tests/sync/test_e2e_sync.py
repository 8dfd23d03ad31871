"""The end-to-end encryption sections of /sync: device_lists (changed / left), the one-time key
counts and the unused fallback key types, and the five-part next_batch token."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from homeserver.app import Homeserver
from homeserver.e2e import device_list_summary
from homeserver.events.draft import EventDraft
from homeserver.streams.tokens import StreamToken
from tests.builders import join, leave, make_room
from tests.e2e_keys.helpers import Device
from tests.harness import TestServer, TestUser
from tests.sync.helpers import sync


async def upload_device_keys(hs: Homeserver, user: TestUser) -> None:
    """What /keys/upload records: the keys, and a device-list change (then a notification)."""
    keys = {"user_id": user.user_id, "device_id": user.device_id, "keys": {}}
    async with hs.store.db.transaction("test_upload_keys") as txn:
        await hs.store.e2e_keys.set_device_keys_txn(
            txn, user.user_id, user.device_id, keys, hs.clock()
        )
        await hs.store.device_lists.add_change_txn(txn, user.user_id, [user.device_id])
    hs.notifier.notify(user_ids=[user.user_id])


def device_lists(body: dict[str, Any]) -> tuple[list[str], list[str]]:
    return body["device_lists"]["changed"], body["device_lists"]["left"]


async def test_initial_sync_has_empty_e2e_sections(server: TestServer):
    alice = await server.register("alice")
    body = await sync(server, alice)
    assert body["to_device"] == {"events": []}
    assert body["device_lists"] == {"changed": [], "left": []}
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert body["device_unused_fallback_key_types"] == []
    assert len(body["next_batch"].split("_")) == 7  # events … device lists, typing, presence


async def test_room_mate_uploading_keys_is_changed(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")  # shares no room with anyone
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    alice_first = await sync(server, alice)
    bob_first = await sync(server, bob)
    carol_first = await sync(server, carol)
    assert StreamToken.parse(bob_first["next_batch"]).device_lists == 0

    poll = asyncio.create_task(sync(server, bob, since=bob_first["next_batch"], timeout="20000"))
    await asyncio.wait_for(hs.notifier.parked(), 10)
    assert not poll.done()
    await upload_device_keys(hs, alice)
    woke = await asyncio.wait_for(poll, 10)
    assert device_lists(woke) == ([alice.user_id], [])
    assert StreamToken.parse(woke["next_batch"]).device_lists > 0
    # The user's own changes are reported to them too.
    assert device_lists(await sync(server, alice, since=alice_first["next_batch"])) == (
        [alice.user_id],
        [],
    )
    assert device_lists(await sync(server, carol, since=carol_first["next_batch"])) == ([], [])
    # Reported once: the next sync has nothing.
    assert device_lists(await sync(server, bob, since=woke["next_batch"])) == ([], [])
    # An initial sync never carries device lists.
    assert device_lists(await sync(server, bob)) == ([], [])


async def test_someone_joining_a_shared_room_is_changed(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, carol.user_id)
    alice_first = await sync(server, alice)
    bob_first = await sync(server, bob)
    await join(hs, room_id, bob.user_id)
    # The room's members see the newcomer; the newcomer sees everyone in the room it joined.
    assert device_lists(await sync(server, alice, since=alice_first["next_batch"])) == (
        [bob.user_id],
        [],
    )
    changed, left = device_lists(await sync(server, bob, since=bob_first["next_batch"]))
    assert set(changed) == {alice.user_id, bob.user_id, carol.user_id} and left == []
    # A member event that is not a join (a display name change) is no news.
    second = await sync(server, alice)
    await hs.sender.send(
        room_id,
        EventDraft(
            "m.room.member", bob.user_id, {"membership": "join", "displayname": "B"}, bob.user_id
        ),
    )
    assert device_lists(await sync(server, alice, since=second["next_batch"])) == ([], [])


async def test_leaving_the_last_shared_room_is_left(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room_a = await make_room(hs, alice.user_id)
    room_b = await make_room(hs, alice.user_id)
    for room_id in (room_a, room_b):
        await join(hs, room_id, bob.user_id)
    await join(hs, room_a, carol.user_id)
    alice_first = await sync(server, alice)
    bob_first = await sync(server, bob)
    carol_first = await sync(server, carol)

    # Still sharing room_b: not left.
    await leave(hs, room_a, bob.user_id)
    after_one = await sync(server, alice, since=alice_first["next_batch"])
    assert device_lists(after_one) == ([], [])
    # Carol and bob shared only room_a: each is "left" for the other.
    assert device_lists(await sync(server, carol, since=carol_first["next_batch"])) == (
        [],
        [bob.user_id],
    )
    bob_mid = await sync(server, bob, since=bob_first["next_batch"])
    assert device_lists(bob_mid) == ([], [carol.user_id])

    await leave(hs, room_b, bob.user_id)
    assert device_lists(await sync(server, alice, since=after_one["next_batch"])) == (
        [],
        [bob.user_id],
    )
    # The one who left sees everyone they no longer share a room with, never themselves.
    assert device_lists(await sync(server, bob, since=bob_mid["next_batch"])) == (
        [],
        [alice.user_id],
    )


async def test_left_users_changes_are_no_longer_reported(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    await leave(hs, room_id, bob.user_id)
    first = await sync(server, alice)
    await upload_device_keys(hs, bob)
    assert device_lists(await sync(server, alice, since=first["next_batch"])) == ([], [])


async def test_one_time_key_counts_and_fallback_types(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    async with hs.store.db.transaction("test_keys") as txn:
        await hs.store.e2e_keys.add_one_time_keys_txn(
            txn,
            alice.user_id,
            alice.device_id,
            [
                ("signed_curve25519", "AAAA", '{"key":"a"}'),
                ("signed_curve25519", "AAAB", '{"key":"b"}'),
                ("curve25519", "AAAC", '"c"'),
            ],
            hs.clock(),
        )
        await hs.store.e2e_keys.set_fallback_key_txn(
            txn, alice.user_id, alice.device_id, "signed_curve25519", "FFFF", '{"key":"f"}'
        )
    body = await sync(server, alice)
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 2, "curve25519": 1}
    assert body["device_unused_fallback_key_types"] == ["signed_curve25519"]
    # Claimed: one OTK goes, then the next claim takes the other, then the fallback (used).
    for _ in range(3):
        claimed = await hs.store.e2e_keys.claim_one_time_keys(
            {alice.user_id: {alice.device_id: "signed_curve25519"}}
        )
        assert claimed[alice.user_id][alice.device_id]
    body = await sync(server, alice)
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 0, "curve25519": 1}
    assert body["device_unused_fallback_key_types"] == []


async def test_older_three_part_tokens_are_accepted(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    token = StreamToken.parse((await sync(server, bob))["next_batch"])
    await upload_device_keys(hs, alice)
    old = f"s{token.events}_{token.account_data}_{token.receipts}"
    body = await sync(server, bob, since=old)
    assert device_lists(body) == ([alice.user_id], [])
    assert StreamToken.parse(body["next_batch"]).device_lists > 0


async def test_wide_windows_ask_only_for_room_mates(
    server: TestServer, hs: Homeserver, monkeypatch: pytest.MonkeyPatch
):
    # An old token spans many device-list positions: the changes are then read for the
    # room-mates only, with the same answer.
    monkeypatch.setattr(device_list_summary, "_SMALL_WINDOW", 0)
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    first = await sync(server, bob)
    await upload_device_keys(hs, alice)
    await upload_device_keys(hs, carol)
    assert device_lists(await sync(server, bob, since=first["next_batch"])) == (
        [alice.user_id],
        [],
    )


async def test_keys_uploaded_through_the_api_reach_sync(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    bob_first = await sync(server, bob)
    poll = asyncio.create_task(sync(server, bob, since=bob_first["next_batch"], timeout="20000"))
    await asyncio.wait_for(hs.notifier.parked(), 10)
    device = Device(alice.user_id, alice.device_id)
    status, body = await server.call(
        "POST",
        "/keys/upload",
        alice,
        json={
            "device_keys": device.device_keys(),
            "one_time_keys": device.one_time_keys(5),
            "fallback_keys": {"signed_curve25519:FFFF": device.one_time_key("FFFF", fallback=True)},
        },
    )
    if status == 404:
        poll.cancel()
        pytest.skip("/keys/upload is not served yet")
    assert status == 200, body
    woke = await asyncio.wait_for(poll, 10)
    assert device_lists(woke) == ([alice.user_id], [])
    mine = await sync(server, alice)
    assert mine["device_one_time_keys_count"] == {"signed_curve25519": 5}
    assert mine["device_unused_fallback_key_types"] == ["signed_curve25519"]
