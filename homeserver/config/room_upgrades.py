"""``room_upgrades``: how an upgrade treats members, conflicts and a crashed upgrader."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.config._reader import Reader

KEYS = frozenset({"room_upgrades"})

DEFAULT_LOCK_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class RoomUpgradesConfig:
    #: Join every local member of the old room to the new one.
    auto_join_local_members: bool = True
    #: Invite remote joined members of the old room to the new one over federation.
    invite_remote_members: bool = True
    #: How often to re-plan when the old room's state changed under the upgrade.
    max_state_conflict_retries: int = 5
    #: After this long an ``upgrading`` room whose upgrader vanished (crash) is ``active`` again.
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS
    #: When another server upgrades a room our users are joined to, join them to the
    #: replacement (each user may opt out: ``m.room_upgrades`` account data).
    follow_remote_upgrades: bool = True


def parse_room_upgrades(reader: Reader) -> RoomUpgradesConfig:
    section = reader.sub("room_upgrades")
    config = RoomUpgradesConfig(
        auto_join_local_members=section.boolean("auto_join_local_members", True),
        invite_remote_members=section.boolean("invite_remote_members", True),
        max_state_conflict_retries=section.integer(
            "max_state_conflict_retries", 5, minimum=0, maximum=100
        ),
        # A new key, so a bare number is in seconds (Synapse's own duration keys use ms).
        lock_timeout_seconds=section.duration_seconds(
            "lock_timeout", DEFAULT_LOCK_TIMEOUT_SECONDS, bare_number_unit="s"
        ),
        follow_remote_upgrades=section.boolean("follow_remote_upgrades", True),
    )
    section.warn_unknown()
    return config
