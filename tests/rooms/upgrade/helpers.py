"""Shared helpers of the room-upgrade tests: the tables an upgrade writes, members joined
straight through the membership service, and the upgrade call (rooms and generous rate limits
come from tests/builders.py)."""

from __future__ import annotations

from typing import Any

from homeserver.app import Homeserver
from homeserver.rooms.bus import DomainEvent
from tests.harness import TestServer, TestUser

#: every table an upgrade writes to: a failed upgrade must leave them all unchanged.
UPGRADE_TABLES = (
    "rooms",
    "events",
    "room_aliases",
    "state_groups",
    "current_state_events",
    "federation_outbox",
    "room_upgrades",
    "account_data",
    "push_rules",
)


async def table_counts(hs: Homeserver) -> dict[str, int]:
    return {
        table: int(await hs.store.db.fetchval(f"SELECT COUNT(*) FROM {table}"))
        for table in UPGRADE_TABLES
    }


async def join(server: TestServer, room_id: str, *users: TestUser) -> None:
    for user in users:
        await server.hs.membership.join(user.user_id, room_id)


async def invite_and_join(
    server: TestServer, room_id: str, inviter: TestUser, *users: TestUser
) -> None:
    for user in users:
        await server.hs.membership.invite(inviter.user_id, room_id, user.user_id)
        await server.hs.membership.join(user.user_id, room_id)


async def upgrade(
    server: TestServer, user: TestUser, room_id: str, new_version: str = "11", **extra: Any
) -> tuple[int, Any]:
    return await server.call(
        "POST", f"/rooms/{room_id}/upgrade", user, json={"new_version": new_version, **extra}
    )


def record_domain_events(hs: Homeserver) -> list[DomainEvent]:
    seen: list[DomainEvent] = []
    hs.bus.subscribe(seen.append)
    return seen


async def state_of(hs: Homeserver, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The room's current state as ``(type, state_key) → content``."""
    ids = await hs.store.state.get_current_state_ids(room_id)
    events = await hs.store.events.get_events(ids.values())
    return {key: events[event_id].content for key, event_id in ids.items()}
