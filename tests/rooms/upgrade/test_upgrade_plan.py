"""The pure parts of the upgrade plan: power levels carried over, the old room's restriction,
the canonical alias split (no database)."""

from __future__ import annotations

from homeserver.room_versions import get_room_version
from homeserver.rooms.upgrade_plan import (
    copy_power_levels,
    restricted_power_levels,
    split_canonical_alias,
)

V1, V10, V11, V12 = (get_room_version(v) for v in ("1", "10", "11", "12"))


def test_levels_are_normalised_to_integers() -> None:
    content = {
        "users": {"@a:hs": "100", "@b:hs": 50.7},
        "events": {"m.room.name": " 60 "},
        "state_default": "50",
        "ban": "junk",
        "custom": {"kept": True},
    }
    copied = copy_power_levels(
        content, old_version=V1, old_creators=set(), new_version=V11, new_creators=set()
    )
    assert copied == {
        "users": {"@a:hs": 100, "@b:hs": 50},
        "events": {"m.room.name": 60},
        "state_default": 50,
        "custom": {"kept": True},
    }


def test_v12_target_removes_creators_and_raises_the_tombstone() -> None:
    content = {
        "users": {"@a:hs": 100, "@b:hs": 100, "@c:hs": 50},
        "state_default": 50,
        "events": {"m.room.tombstone": 100},
    }
    copied = copy_power_levels(
        content,
        old_version=V11,
        old_creators=set(),
        new_version=V12,
        new_creators={"@a:hs", "@b:hs"},
    )
    assert copied["users"] == {"@c:hs": 50}
    assert copied["events"]["m.room.tombstone"] == 150
    # a state_default above 150 lifts the tombstone above it
    copied = copy_power_levels(
        {"state_default": 200},
        old_version=V11,
        old_creators=set(),
        new_version=V12,
        new_creators={"@a:hs"},
    )
    assert copied["events"]["m.room.tombstone"] == 201


def test_old_creators_keep_the_top_level_in_an_older_version() -> None:
    content = {"users": {"@mod:hs": 50}, "events": {"m.room.tombstone": 150}}
    copied = copy_power_levels(
        content,
        old_version=V12,
        old_creators={"@a:hs", "@b:hs"},
        new_version=V10,
        new_creators=set(),
    )
    assert copied["users"] == {"@mod:hs": 50, "@a:hs": 150, "@b:hs": 150}
    # v12 -> v12: an old creator not re-listed becomes an admin, not powerless
    copied = copy_power_levels(
        {"users": {}},
        old_version=V12,
        old_creators={"@a:hs", "@b:hs"},
        new_version=V12,
        new_creators={"@a:hs"},
    )
    assert copied["users"] == {"@b:hs": 100}


def test_restricted_power_levels() -> None:
    assert restricted_power_levels(V10, {"users_default": 0}) == {
        "users_default": 0,
        "events_default": 50,
        "invite": 50,
    }
    assert restricted_power_levels(V10, {"users_default": 60, "invite": 70}) == {
        "users_default": 60,
        "invite": 70,
        "events_default": 61,
    }
    assert restricted_power_levels(V10, {"events_default": 50, "invite": 50}) is None


def test_canonical_alias_split() -> None:
    content = {
        "alias": "#a:hs",
        "alt_aliases": ["#b:hs", "#c:remote"],
    }
    new, old = split_canonical_alias(content, "hs")
    assert new == {"alias": "#a:hs", "alt_aliases": ["#b:hs"]}
    assert old == {"alt_aliases": ["#c:remote"]}
    assert split_canonical_alias({"alias": "#x:remote"}, "hs") == (None, None)
