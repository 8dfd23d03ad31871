"""Upgrades across servers, from the side of the server that did not upgrade: the tombstone
received over federation moves our copy of the room active → tombstoned (actor "federation"),
and our user, moved into the successor, keeps their tags and push rules; both engines."""

from __future__ import annotations

from pathlib import Path

from homeserver.rooms.lifecycle import Actor, RoomStatus
from homeserver.storage import Store
from tests.federation.cs_client import q
from tests.federation.h4_helpers import second_store, two_servers

__all__ = ["second_store"]


async def test_remote_upgrade_tombstones_our_copy_and_moves_tags(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        old = await alice.create_room(preset="public_chat", room_version="10")
        await bob.join(old, via=[a.name])
        await bob.ok("PUT", f"/user/{q(bob.user_id)}/rooms/{q(old)}/tags/u.work", {"order": 0.5})
        await bob.ok("PUT", f"/pushrules/global/room/{q(old)}", {"actions": ["dont_notify"]})
        before = await b.hs.store.rooms.get_room(old)
        assert before is not None and before.status == RoomStatus.ACTIVE

        new = await alice.upgrade(old, "12")
        tombstone = await bob.wait_for(
            lambda: bob.find_event(old, "m.room.tombstone"), 60, "the tombstone"
        )
        assert tombstone["content"]["replacement_room"] == new
        room = await b.hs.store.rooms.get_room(old)
        assert room is not None
        assert (room.status, room.replacement_room_id) == (RoomStatus.TOMBSTONED, new)
        last = (await b.hs.store.rooms.get_transitions(old))[-1]
        assert (last.from_status, last.to_status, last.actor) == (
            RoomStatus.ACTIVE,
            RoomStatus.TOMBSTONED,
            Actor.FEDERATION,
        )

        # Our server moves our user into the successor, hosted on the other server (following
        # the remote upgrade: no /join from the client).
        await bob.wait_for(lambda: new in bob.joined or None, 60, "the successor joined")
        tags = await bob.ok("GET", f"/user/{q(bob.user_id)}/rooms/{q(new)}/tags")
        assert tags["tags"] == {"u.work": {"order": 0.5}}
        rule = await bob.ok("GET", f"/pushrules/global/room/{q(new)}")
        assert rule["actions"] == ["dont_notify"]


async def test_a_second_tombstone_changes_nothing(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    """A tombstoned room is terminal: another tombstone from the remote is stored as an event
    but the lifecycle keeps its first replacement."""
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        room_id = await alice.create_room(preset="public_chat", room_version="10")
        await bob.join(room_id, via=[a.name])
        first = "!first:" + a.name
        second = "!second:" + a.name
        await alice.send_state(
            room_id, "m.room.tombstone", {"body": "1", "replacement_room": first}
        )
        await bob.wait_for(lambda: bob.find_event(room_id, "m.room.tombstone"), 60, "tombstone")
        await alice.send_state(
            room_id, "m.room.tombstone", {"body": "2", "replacement_room": second}
        )
        await bob.wait_for(
            lambda: bob.find_event(
                room_id, "m.room.tombstone", lambda e: e["content"]["body"] == "2"
            ),
            60,
            "the second tombstone",
        )
        room = await b.hs.store.rooms.get_room(room_id)
        assert room is not None
        assert (room.status, room.replacement_room_id) == (RoomStatus.TOMBSTONED, first)
        transitions = await b.hs.store.rooms.get_transitions(room_id)
        assert [t.to_status for t in transitions].count(RoomStatus.TOMBSTONED) == 1
