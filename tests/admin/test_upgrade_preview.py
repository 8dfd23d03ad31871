"""``GET /_homeserver/admin/v1/rooms/{roomId}/upgrade_plan``, on both engines: the preview of an
upgrade equals the upgrade that follows it (the new room's events and state, power levels before
and after, members joined and invited — a remote member too — aliases moved, the old room's
events), the preview writes and publishes nothing, and it refuses what the upgrade refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from homeserver.errors import MatrixError
from homeserver.rooms.upgrade_plan import UpgradePolicy
from homeserver.types import domain_of
from tests.builders import create_room, generous_config
from tests.federation.received_helpers import Remote
from tests.harness import TestServer, TestUser
from tests.rooms.api.helpers import room_events
from tests.rooms.upgrade.helpers import join, record_domain_events, state_of, table_counts, upgrade

ADMIN = "/_homeserver/admin/v1"
#: tables an upgrade writes besides those of tests.rooms.upgrade.helpers.UPGRADE_TABLES.
MORE_TABLES = (
    "room_lifecycle_transitions",
    "event_edges",
    "event_auth",
    "state_group_entries",
    "event_to_state_groups",
    "event_forward_extremities",
    "room_upgrade_failures",
)


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


def plan_path(room_id: str) -> str:
    return f"{ADMIN}/rooms/{quote(room_id, safe='')}/upgrade_plan"


async def _preview(
    server: TestServer, admin: TestUser, room_id: str, **params: str
) -> tuple[int, Any]:
    return await server.call("GET", plan_path(room_id), admin, params=params)


async def _all_counts(hs: Homeserver) -> dict[str, int]:
    counts = await table_counts(hs)
    for table in MORE_TABLES:
        counts[table] = int(await hs.store.db.fetchval(f"SELECT COUNT(*) FROM {table}"))
    return counts


async def _rich_room(server: TestServer) -> tuple[str, dict[str, TestUser], str]:
    """A public v10 room with local members (joined, invited, banned), a remote joined member,
    aliases (canonical with alt), name, topic, tweaked power levels, in the directory."""
    hs = server.hs
    users = {name: await server.register(name) for name in ("alice", "bob", "carol", "dave")}
    alice = users["alice"]
    room = await create_room(
        server,
        alice,
        preset="public_chat",
        room_version="10",
        room_alias_name="main",
        name="The room",
        topic="Topics",
        visibility="public",
        power_level_content_override={
            "users": {alice.user_id: 100, users["bob"].user_id: 50},
            "events": {"m.room.topic": 25},
            "events_default": 0,
            "invite": 0,
        },
    )
    status, body = await server.call(
        "PUT", "/directory/room/%23second:test.example", alice, json={"room_id": room}
    )
    assert status == 200, body
    status, body = await server.call(
        "PUT",
        f"/rooms/{room}/state/m.room.canonical_alias",
        alice,
        json={"alias": "#main:test.example", "alt_aliases": ["#second:test.example"]},
    )
    assert status == 200, body
    await join(server, room, users["bob"])
    await hs.membership.invite(alice.user_id, room, users["carol"].user_id)
    await hs.membership.ban(alice.user_id, room, users["dave"].user_id, reason="spam")
    remote = Remote()
    await remote.seed_key(hs)
    await remote.join(hs, room, "zed")
    return room, users, remote.user("zed")


def _event_tuples(events: list[Any]) -> list[tuple[str, str | None, str, dict[str, Any]]]:
    return [(e.type, e.state_key, e.sender, e.content) for e in events]


@pytest.mark.parametrize("target", ["11", "12"])
async def test_preview_matches_the_upgrade_that_follows(server: TestServer, target: str) -> None:
    hs = server.hs
    admin = await server.register("root", admin=True)
    room, users, remote_user = await _rich_room(server)
    alice = users["alice"]
    old_pl = (await state_of(hs, room))[("m.room.power_levels", "")]
    published = record_domain_events(hs)
    before = await _all_counts(hs)

    status, plan = await _preview(server, admin, room, new_version=target)
    assert status == 200, plan
    assert await _all_counts(hs) == before  # nothing written
    assert published == []  # nothing published
    room_row = await hs.store.rooms.get_room(room)
    assert room_row is not None and room_row.status == "active"

    status, answer = await upgrade(server, alice, room, target)
    assert status == 200, answer
    new = answer["replacement_room"]

    # who, and from what to what (the admin is not in the room: its most powerful member)
    assert (plan["room_id"], plan["room_version"], plan["new_version"], plan["upgrader"]) == (
        room,
        "10",
        target,
        alice.user_id,
    )
    # the new room: every event after the create event, in order, and the create content
    real_events = await room_events(hs, new)
    assert real_events[0].type == "m.room.create"
    assert [
        (e["type"], e["state_key"], e["sender"], e["content"]) for e in plan["events"]
    ] == _event_tuples(real_events[1:])
    real_create = dict(real_events[0].content)
    real_create["predecessor"] = {"room_id": room}
    assert plan["create_content"] == real_create
    # the state it is left with
    new_state = await state_of(hs, new)
    copied = {
        (t, sk): content
        for (t, sk), content in new_state.items()
        if t not in ("m.room.create", "m.room.member", "m.room.power_levels")
    }
    assert {(c["type"], c["state_key"]): c["content"] for c in plan["copied_state"]} == copied
    assert ("m.room.topic", "") in copied and ("m.room.name", "") in copied
    # power levels before and after, in both rooms
    old_state = await state_of(hs, room)
    assert plan["power_levels"] == {
        "before": old_pl,
        "new_room": new_state[("m.room.power_levels", "")],
        "old_room_after": old_state[("m.room.power_levels", "")],
    }
    assert plan["power_levels"]["old_room_after"]["events_default"] == 50
    # members
    memberships = {sk: c["membership"] for (t, sk), c in new_state.items() if t == "m.room.member"}

    def having(membership: str, local: bool) -> list[str]:
        return sorted(
            u
            for u, m in memberships.items()
            if m == membership and (domain_of(u) == "test.example") == local
        )

    assert plan["members"] == {
        "joined": having("join", True),
        "invited_local": having("invite", True),
        "invited_remote": having("invite", False),
        "banned": sorted(u for u, m in memberships.items() if m == "ban"),
    }
    assert plan["members"]["joined"] == sorted([alice.user_id, users["bob"].user_id])
    assert plan["members"]["invited_local"] == [users["carol"].user_id]
    assert plan["members"]["invited_remote"] == [remote_user]
    assert plan["members"]["banned"] == [users["dave"].user_id]
    # aliases, canonical alias and directory
    assert plan["aliases_moved"] == await hs.store.aliases.get_aliases_for_room(new)
    assert plan["aliases_moved"] == ["#main:test.example", "#second:test.example"]
    assert plan["canonical_alias"] == {
        "new_room": new_state[("m.room.canonical_alias", "")],
        "old_room_after": old_state.get(("m.room.canonical_alias", "")),
    }
    new_row = await hs.store.rooms.get_room(new)
    assert new_row is not None and plan["directory"] == {"publish_new_room": new_row.is_public}
    assert plan["directory"]["publish_new_room"] is True
    # the old room's events after its tombstone
    old_events = await room_events(hs, room)
    tombstone_at = [e.type for e in old_events].index("m.room.tombstone")
    tombstone = old_events[tombstone_at]
    assert plan["old_room"]["tombstone"] == {
        k: v for k, v in tombstone.content.items() if k != "replacement_room"
    }
    assert [
        (e["type"], e["state_key"], e["sender"], e["content"]) for e in plan["old_room"]["events"]
    ] == _event_tuples(old_events[tombstone_at + 1 :])
    assert plan["skipped"] == []


async def test_preview_with_members_left_behind(server: TestServer) -> None:
    """The preview follows the room_upgrades policy the upgrade uses."""
    hs = server.hs
    hs.room_upgrades.policy = UpgradePolicy(
        server_name="test.example", auto_join_local_members=False, invite_remote_members=False
    )
    admin = await server.register("root", admin=True)
    room, users, _remote = await _rich_room(server)
    status, plan = await _preview(server, admin, room, new_version="11")
    assert status == 200, plan
    status, answer = await upgrade(server, users["alice"], room, "11")
    assert status == 200, answer
    real = await room_events(hs, answer["replacement_room"])
    assert [(e["type"], e["state_key"]) for e in plan["events"]] == [
        (e.type, e.state_key) for e in real[1:]
    ]
    assert plan["members"]["joined"] == [users["alice"].user_id]
    assert plan["members"]["invited_remote"] == []


async def test_the_upgrader_by_default_and_by_choice(server: TestServer) -> None:
    hs = server.hs
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(
        server,
        alice,
        preset="public_chat",
        room_version="10",
        power_level_content_override={"users": {alice.user_id: 100, bob.user_id: 100}},
    )
    await join(server, room, bob)
    status, plan = await _preview(server, admin, room, new_version="11")
    assert (status, plan["upgrader"]) == (200, alice.user_id)  # equal power: the first
    await join(server, room, admin)
    status, plan = await _preview(server, admin, room, new_version="11")
    # the admin is in the room but has less power than alice and bob
    assert (status, plan["upgrader"]) == (200, alice.user_id)
    await hs.room_events.send_state(
        alice.user_id,
        room,
        "m.room.power_levels",
        "",
        {"users": {alice.user_id: 100, bob.user_id: 100, admin.user_id: 100}},
    )
    status, plan = await _preview(server, admin, room, new_version="11")
    assert (status, plan["upgrader"]) == (200, admin.user_id)  # equal power: the admin
    status, plan = await _preview(server, admin, room, new_version="11", user_id=bob.user_id)
    assert (status, plan["upgrader"]) == (200, bob.user_id)
    joins = [e for e in plan["events"] if e["type"] == "m.room.member"]
    assert joins[0]["sender"] == bob.user_id


async def test_preview_refuses_what_the_upgrade_refuses(server: TestServer) -> None:
    hs = server.hs
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    await join(server, room, bob)
    published = record_domain_events(hs)
    before = await _all_counts(hs)
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 400, "M_MISSING_PARAM"),
        ({"new_version": "999"}, 400, "M_UNSUPPORTED_ROOM_VERSION"),
        ({"new_version": "11", "user_id": bob.user_id}, 403, "M_FORBIDDEN"),  # no power
        ({"new_version": "11", "user_id": "@carol:test.example"}, 403, "M_FORBIDDEN"),  # not in
        ({"new_version": "11", "user_id": "@zed:elsewhere.example"}, 400, "M_INVALID_PARAM"),
        ({"new_version": "11", "user_id": "not a user"}, 400, "M_INVALID_PARAM"),
    ]
    for params, status, errcode in cases:
        got, body = await _preview(server, admin, room, **params)
        assert (got, body["errcode"]) == (status, errcode), (params, body)
        if params.get("new_version") == "11" and status == 403:
            # the upgrade itself answers the same
            user = bob if params["user_id"] == bob.user_id else await server.register("carol")
            real, real_body = await upgrade(server, user, room, "11")
            assert (real, real_body["errcode"]) == (status, errcode)
    for room_id, status, errcode in [
        ("!unknown:test.example", 404, "M_NOT_FOUND"),
        ("nonsense", 400, "M_INVALID_PARAM"),
    ]:
        got, body = await _preview(server, admin, room_id, new_version="11")
        assert (got, body["errcode"]) == (status, errcode)
    # only the two real upgrade attempts published their failure; nothing was written
    assert [e.payload["reason"] for e in published] == ["forbidden", "forbidden"]
    assert await _all_counts(hs) == before


async def test_preview_of_a_room_no_local_user_is_in(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    await server.hs.membership.leave(alice.user_id, room)
    status, body = await _preview(server, admin, room, new_version="11")
    assert (status, body["errcode"]) == (400, "M_BAD_STATE")


async def test_preview_of_a_room_that_is_not_active(server: TestServer) -> None:
    hs = server.hs
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(
        server,
        alice,
        preset="public_chat",
        room_version="10",
        power_level_content_override={"users": {alice.user_id: 100, bob.user_id: 100}},
    )
    await join(server, room, bob)
    now = hs.clock()
    assert await hs.store.rooms.transition(
        room,
        "active",
        "upgrading",
        actor="requester",
        reason="test",
        ts=now,
        upgrade_lock_holder=bob.user_id,
        upgrade_lock_expires_ts=now + 3_600_000,
    )
    status, body = await _preview(server, admin, room, new_version="11")
    in_progress = {
        "errcode": "M_UNKNOWN",
        "error": "An upgrade for this room is currently in progress",
    }
    # (an upgrade request would wait for that upgrade's outcome; a preview cannot)
    assert (status, body) == (400, in_progress)

    # an expired lease would be recovered by the upgrade: the preview goes on
    assert await hs.store.rooms.transition(
        room, "upgrading", "active", actor="system", reason="t", ts=hs.clock()
    )
    assert await hs.store.rooms.transition(
        room,
        "active",
        "upgrading",
        actor="requester",
        reason="test",
        ts=hs.clock(),
        upgrade_lock_holder=bob.user_id,
        upgrade_lock_expires_ts=1,
    )
    status, body = await _preview(server, admin, room, new_version="11")
    assert status == 200, body
    row = await hs.store.rooms.get_room(room)
    assert row is not None and row.status == "upgrading"  # and the preview recovered nothing

    status, answer = await upgrade(server, alice, room, "11")
    assert status == 200, answer
    status, body = await _preview(server, admin, room, new_version="12")
    assert (status, body["errcode"], body["replacement_room"]) == (
        400,
        "M_BAD_STATE",
        answer["replacement_room"],
    )
    real_status, real_body = await upgrade(server, bob, room, "12")
    assert (real_status, real_body) == (status, body)


async def test_the_service_preview_plans_without_writing(server: TestServer) -> None:
    """``RoomUpgradeService.preview`` runs the upgrade's check, plan and build and nothing
    after: nothing is written, and the plan is the one for the upgrader asked about; a room
    the upgrade would refuse is refused with the upgrade's own error."""
    hs = server.hs
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    before = await _all_counts(hs)
    previewed = await hs.room_upgrades.preview(alice.user_id, room, {"new_version": "11"})
    assert previewed.plan.upgrader == alice.user_id
    assert previewed.plan.new_version.identifier == "11"
    assert previewed.snapshot.room_id == room
    assert previewed.built.new_events[0].type == "m.room.create"
    assert await _all_counts(hs) == before
    status, body = await upgrade(server, alice, room, "11")
    assert status == 200, body
    with pytest.raises(MatrixError) as refused:
        await hs.room_upgrades.preview(alice.user_id, room, {"new_version": "11"})
    assert (refused.value.status, refused.value.errcode) == (400, "M_BAD_STATE")
    assert refused.value.extra.get("replacement_room") == body["replacement_room"]
