"""Our users follow an upgrade made by another server, between two of our servers in process
(real HTTPS on loopback; server A upgrades, server B's users follow with no client action):
a public replacement joined directly (the first join through federation, the next one a local
join; tags and push rules follow; a user who opted out and one who left earlier stay), a
restricted replacement whose allow rule they meet, an invite-only replacement (refused, kept
pending, joined when the invite arrives), and A's own upgrade, which invites B's users (B
accepts); a "replacement" that does not name the old room as its predecessor is left again.
Both engines."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from homeserver.storage import Store
from homeserver.storage.upgrade_follows import DONE, FAILED, PENDING
from homeserver.visibility.client import get_membership
from tests.federation.cs_client import MatrixClient, q
from tests.federation.h4_helpers import Peer, second_store, two_servers

__all__ = ["second_store"]

#: A generous bound on each wait (it returns as soon as the state is there).
TIMEOUT = 60.0


async def wait_until(what: str, check: Any, timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def membership_of(peer: Peer, room_id: str, user_id: str) -> str | None:
    event = await get_membership(peer.hs.store, room_id, user_id)
    return None if event is None else event.membership


async def wait_joined(peer: Peer, room_id: str, user_id: str) -> None:
    async def joined() -> bool:
        return await membership_of(peer, room_id, user_id) == "join"

    await wait_until(f"{user_id} joined to {room_id}", joined)


async def wait_follow_state(peer: Peer, old: str, user_id: str, state: str) -> None:
    async def reached() -> bool:
        follow = await peer.hs.store.upgrade_follows.get(old, user_id)
        return follow is not None and follow.state == state

    await wait_until(f"{user_id}'s follow out of {old} to be {state}", reached)


def successor_of(old: str) -> dict[str, Any]:
    return {"predecessor": {"room_id": old, "event_id": "$unknown"}}


async def tombstone(alice: MatrixClient, old: str, new: str) -> None:
    await alice.send_state(old, "m.room.tombstone", {"body": "moved", "replacement_room": new})


async def test_public_replacement_followed_with_tags_opt_out_and_leavers_stay(
    tmp_path: Path, store: Store, second_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="homeserver.federation.upgrade_follows")
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob, erin, carol, dave = [await b.user(n) for n in ("bob", "erin", "carol", "dave")]
        old = await alice.create_room(preset="public_chat", room_version="10")
        for user in (bob, erin, carol, dave):
            await user.join(old, via=[a.name])
        await dave.leave(old)
        await carol.ok(
            "PUT",
            f"/user/{q(carol.user_id)}/account_data/m.room_upgrades",
            {"follow_remote_upgrades": False},
        )
        await bob.ok("PUT", f"/user/{q(bob.user_id)}/rooms/{q(old)}/tags/u.work", {"order": 0.5})
        await bob.ok("PUT", f"/pushrules/global/room/{q(old)}", {"actions": ["dont_notify"]})
        await erin.ok("PUT", f"/user/{q(erin.user_id)}/rooms/{q(old)}/tags/u.home", {})
        new = await alice.create_room(
            preset="public_chat",
            room_version="10",
            creation_content=successor_of(old),
        )
        await tombstone(alice, old, new)

        for user in (bob, erin):
            await wait_follow_state(b, old, user.user_id, DONE)
            await wait_joined(b, new, user.user_id)
            await wait_joined(a, new, user.user_id)  # the resident saw both joins
        tags = await bob.ok("GET", f"/user/{q(bob.user_id)}/rooms/{q(new)}/tags")
        assert tags["tags"] == {"u.work": {"order": 0.5}}
        rule = await bob.ok("GET", f"/pushrules/global/room/{q(new)}")
        assert rule["actions"] == ["dont_notify"]
        tags = await erin.ok("GET", f"/user/{q(erin.user_id)}/rooms/{q(new)}/tags")
        assert tags["tags"] == {"u.home": {}}
        # Nobody else was moved, and only the two were queued.
        assert await membership_of(b, new, carol.user_id) is None
        assert await membership_of(b, new, dave.user_id) is None
        follows = await b.hs.store.upgrade_follows.for_old_room(old)
        assert sorted(f.user_id for f in follows) == sorted([bob.user_id, erin.user_id])
        assert follows[0].via[0] == a.name
        # One join through federation made B resident; the other was a local join (a PDU).
        outcomes = [r.getMessage() for r in caplog.records if ": joined (" in r.getMessage()]
        assert sum("(through federation)" in m for m in outcomes) == 1, outcomes
        assert sum("(locally)" in m for m in outcomes) == 1, outcomes


async def test_restricted_replacement_allowing_old_room_members(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        old = await alice.create_room(preset="public_chat", room_version="10")
        await bob.join(old, via=[a.name])
        rule = {"type": "m.room_membership", "room_id": old}
        new = await alice.create_room(
            preset="private_chat",
            room_version="10",
            creation_content=successor_of(old),
            initial_state=[
                {
                    "type": "m.room.join_rules",
                    "state_key": "",
                    "content": {"join_rule": "restricted", "allow": [rule]},
                }
            ],
        )
        await tombstone(alice, old, new)
        await wait_joined(b, new, bob.user_id)
        await wait_joined(a, new, bob.user_id)
        join = await a.hs.store.state.get_current_state_event(new, "m.room.member", bob.user_id)
        assert join is not None
        assert join.content.get("join_authorised_via_users_server") == alice.user_id


async def test_invite_only_replacement_pending_until_the_invite(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        old = await alice.create_room(preset="public_chat", room_version="10")
        await bob.join(old, via=[a.name])
        new = await alice.create_room(
            preset="private_chat", room_version="10", creation_content=successor_of(old)
        )
        await tombstone(alice, old, new)
        await wait_follow_state(b, old, bob.user_id, PENDING)
        assert await membership_of(b, new, bob.user_id) is None
        # The tombstone is what bob's client shows meanwhile.
        await bob.wait_for(lambda: bob.find_event(old, "m.room.tombstone"), TIMEOUT, "tombstone")

        await alice.invite(new, bob.user_id)
        await wait_follow_state(b, old, bob.user_id, DONE)
        await wait_joined(a, new, bob.user_id)


async def test_our_other_servers_upgrade_invites_and_this_one_accepts(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        old = await alice.create_room(preset="private_chat", room_version="10")
        await alice.invite(old, bob.user_id)
        await bob.wait_for_invite(old, TIMEOUT)
        await bob.join(old, via=[a.name])
        await wait_joined(a, old, bob.user_id)
        await bob.ok("PUT", f"/user/{q(bob.user_id)}/rooms/{q(old)}/tags/m.favourite", {})

        new = await alice.upgrade(old, "12")  # invites bob (the new room is invite-only)
        await wait_follow_state(b, old, bob.user_id, DONE)
        await wait_joined(a, new, bob.user_id)
        tags = await bob.ok("GET", f"/user/{q(bob.user_id)}/rooms/{q(new)}/tags")
        assert tags["tags"] == {"m.favourite": {}}


async def test_a_replacement_not_naming_the_old_room_is_left_again(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    """An admin of the old room names some other public room as the replacement: our user is
    not kept there."""
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        old = await alice.create_room(preset="public_chat", room_version="10")
        await bob.join(old, via=[a.name])
        elsewhere = await alice.create_room(preset="public_chat", room_version="10")
        await tombstone(alice, old, elsewhere)
        await wait_follow_state(b, old, bob.user_id, FAILED)
        assert await membership_of(b, elsewhere, bob.user_id) == "leave"

        async def left_there() -> bool:
            return await membership_of(a, elsewhere, bob.user_id) == "leave"

        await wait_until("bob's leave to reach the room's server", left_there)
