"""Upgrades between every pair of (1, 9, 10, 11, 12) as source and (10, 11, 12) as target, on
both engines: the new create event, the copied state (exactly), power levels, the old room's
tombstone and restrictions, aliases and directory, members, lifecycle history and /sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from homeserver.room_versions import get_room_version
from tests.builders import create_room, generous_config
from tests.harness import TestServer
from tests.rooms.upgrade.helpers import join, state_of, upgrade
from tests.sync.helpers import sync

SOURCES = ["1", "9", "10", "11", "12"]
TARGETS = ["10", "11", "12"]


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


def _timeline_and_state(response: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    room = response["rooms"]["join"][room_id]
    return room["state"]["events"] + room["timeline"]["events"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("source", SOURCES)
async def test_upgrade_between_versions(server: TestServer, source: str, target: str) -> None:
    hs = server.hs
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    old = await create_room(
        server,
        alice,
        preset="public_chat",
        room_version=source,
        name="The room",
        topic="Talk",
        room_alias_name="the-room",
        visibility="public",
    )
    await join(server, old, bob, carol)
    before = await sync(server, bob)
    old_state = await state_of(hs, old)

    extra = {"additional_creators": [carol.user_id]} if target == "12" else {}
    status, body = await upgrade(server, alice, old, target, **extra)
    assert status == 200, body
    new = body["replacement_room"]
    new_state = await state_of(hs, new)
    target_version = get_room_version(target)

    # --- the new create event ---
    create = new_state[("m.room.create", "")]
    assert create["room_version"] == target
    tombstone_id = await hs.store.state.get_current_state_event_id(old, "m.room.tombstone")
    if target_version.room_id_is_create_event_hash:
        assert create["predecessor"] == {"room_id": old}
        assert create["additional_creators"] == [carol.user_id]
    else:
        assert create["predecessor"] == {"room_id": old, "event_id": tombstone_id}
        assert "additional_creators" not in create
    assert ("creator" in create) == (not target_version.implicit_room_creator)
    assert "type" not in create

    # --- exactly the copied state (public_chat: no guest access, no encryption) ---
    members = {("m.room.member", u.user_id) for u in (alice, bob, carol)}
    assert set(new_state) == {
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.canonical_alias", ""),
        *members,
    }
    for key in [("m.room.join_rules", ""), ("m.room.name", ""), ("m.room.topic", "")]:
        assert new_state[key] == old_state[key]
    assert new_state[("m.room.canonical_alias", "")] == {"alias": "#the-room:test.example"}
    for key in members:
        assert new_state[key]["membership"] == "join"

    # --- power levels ---
    old_pl = old_state[("m.room.power_levels", "")]
    new_pl = new_state[("m.room.power_levels", "")]
    if target_version.creators_have_infinite_power:
        assert alice.user_id not in new_pl.get("users", {})
        assert carol.user_id not in new_pl.get("users", {})
        assert new_pl["events"]["m.room.tombstone"] >= 150
        assert new_pl["events"]["m.room.tombstone"] > new_pl["state_default"]
    elif get_room_version(source).creators_have_infinite_power:
        # the old creator keeps the top level instead of dropping to users_default
        assert new_pl["users"][alice.user_id] >= 100
    else:
        assert new_pl["users"] == old_pl["users"]
    for key in ("ban", "kick", "redact", "state_default", "users_default", "events_default"):
        assert new_pl[key] == old_pl[key]

    # --- the old room: tombstone and restricted power levels ---
    after_old = await state_of(hs, old)
    assert after_old[("m.room.tombstone", "")] == {
        "body": "This room has been replaced",
        "replacement_room": new,
    }
    restricted = after_old[("m.room.power_levels", "")]
    assert restricted["events_default"] == 50 and restricted["invite"] == 50
    assert after_old[("m.room.canonical_alias", "")] == {}

    # --- aliases and directory moved ---
    alias = await hs.store.aliases.get_alias("#the-room:test.example")
    assert alias is not None and alias.room_id == new
    assert await hs.store.rooms.get_public_room_ids() == [new]

    # --- lifecycle ---
    room = await hs.store.rooms.get_room(old)
    assert room is not None and room.status == "tombstoned"
    assert room.replacement_room_id == new and room.upgrade_lock_holder is None
    history = [
        (t.from_status, t.to_status, t.actor) for t in await hs.store.rooms.get_transitions(old)
    ]
    assert history[-2:] == [
        ("active", "upgrading", "requester"),
        ("upgrading", "tombstoned", "system"),
    ]
    new_room = await hs.store.rooms.get_room(new)
    assert new_room is not None and new_room.status == "active"
    assert new_room.room_version == target

    # --- /sync of a member: the tombstone in the old room, the new room joined ---
    after = await sync(server, bob, since=before["next_batch"])
    old_events = after["rooms"]["join"][old]["timeline"]["events"]
    assert any(e["type"] == "m.room.tombstone" for e in old_events)
    new_events = _timeline_and_state(after, new)
    creates = [e for e in new_events if e["type"] == "m.room.create"]
    assert creates and creates[0]["content"]["predecessor"]["room_id"] == old
