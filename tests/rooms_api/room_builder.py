"""Rooms for the room-use tests, built straight in the store (BatchBuilder + persist_events), so
these tests do not depend on the createRoom endpoint: a creator, power levels, join rule and
history visibility, in any room version."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from homeserver.events.draft import EventDraft
from homeserver.room_versions import get_room_version
from homeserver.rooms.sender import BatchBuilder
from homeserver.storage import NewRoom
from tests.harness import make_config

#: rate limits high enough that tests never trip them by accident.
GENEROUS_LIMITS: dict[str, Any] = {
    "rc_message": {"per_second": 1000, "burst_count": 1000},
    "rc_joins": {"local": {"per_second": 1000, "burst_count": 1000}},
    "rc_invites": {"per_second": 1000, "burst_count": 1000},
    "rc_to_device": {"per_second": 1000, "burst_count": 1000},
}


def generous_config(tmp_path: Path) -> HomeserverConfig:
    return make_config(tmp_path, **GENEROUS_LIMITS)


async def make_room(
    hs: Homeserver,
    creator: str,
    *,
    version: str = "10",
    join_rule: str = "public",
    history_visibility: str = "shared",
    users: dict[str, int] | None = None,
    power_levels: dict[str, Any] | None = None,
    allow: list[dict[str, Any]] | None = None,
) -> str:
    """A room made by ``creator`` (joined, PL 100 or a v12 creator); returns its ID.
    ``allow``: the join rules' allow list (restricted rooms)."""
    room_version = get_room_version(version)
    room_id = (
        None
        if room_version.room_id_is_create_event_hash
        else f"!{secrets.token_hex(8)}:{hs.server_name}"
    )
    batch = BatchBuilder(room_version, hs.signer, room_id, clock=hs.clock)
    create: dict[str, Any] = {"room_version": version}
    if not room_version.implicit_room_creator:
        create["creator"] = creator
    batch.add(EventDraft("m.room.create", creator, create, ""))
    batch.add(EventDraft("m.room.member", creator, {"membership": "join"}, creator))
    pl_users = {} if room_version.creators_have_infinite_power else {creator: 100}
    pl_users.update(users or {})
    pl: dict[str, Any] = {"users": pl_users, "users_default": 0, "state_default": 50}
    pl.update(power_levels or {})
    batch.add(EventDraft("m.room.power_levels", creator, pl, ""))
    join_rules: dict[str, Any] = {"join_rule": join_rule}
    if allow is not None:
        join_rules["allow"] = allow
    batch.add(EventDraft("m.room.join_rules", creator, join_rules, ""))
    batch.add(
        EventDraft(
            "m.room.history_visibility",
            creator,
            {"history_visibility": history_visibility},
            "",
        )
    )
    assert batch.room_id is not None
    await hs.store.persist_events(
        [(e, None) for e in batch.events],
        new_room=NewRoom(batch.room_id, version, creator, hs.clock()),
    )
    return batch.room_id
