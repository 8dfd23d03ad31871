"""Which servers have a member joined to a room (table ``room_joined_servers``, migration 036).

Every event sent is fanned out to the other servers in its room, and every inbound join asks
whether a server is in it: reading the room's whole member list for that cost O(members) per
event (half of each join's time in a room of 10,000). The count of joined members per server
is kept instead, changed in the transaction that changes ``current_state_events`` (so every
process sees it consistent with the state, and a purge of the room takes it along).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from homeserver.storage.database import Database, Transaction, placeholders
from homeserver.types import domain_of

_CHUNK = 500


async def record_membership_changes_txn(
    txn: Transaction,
    room_id: str,
    memberships_after: Mapping[str, str | None],
    *,
    new_room: bool,
) -> dict[str, str | None]:
    """Call before ``current_state_events`` of ``room_id`` takes ``memberships_after`` (member
    state key → its membership from now on; None: the key leaves the state). Returns the
    memberships those keys had until now (those present), for the persister's other checks."""
    before: dict[str, str | None] = {}
    if not memberships_after:
        return before
    if not new_room:
        keys = sorted(memberships_after)
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            rows = await txn.fetchall(
                "SELECT state_key, membership FROM current_state_events"
                " WHERE room_id = ? AND type = 'm.room.member'"
                f" AND state_key IN ({placeholders(len(chunk))})",
                room_id,
                *chunk,
            )
            before.update((state_key, membership) for state_key, membership in rows)
    change: Counter[str] = Counter()
    for user_id, after in memberships_after.items():
        step = (after == "join") - (before.get(user_id) == "join")
        if step:
            change[domain_of(user_id)] += step
    moved = [(room_id, server, step) for server, step in change.items() if step]
    if not moved:
        return before
    await txn.executemany(
        "INSERT INTO room_joined_servers (room_id, server_name, joined_members) VALUES (?, ?, ?)"
        " ON CONFLICT (room_id, server_name) DO UPDATE"
        " SET joined_members = room_joined_servers.joined_members + excluded.joined_members",
        moved,
    )
    if any(step < 0 for _, _, step in moved):
        await txn.execute(
            "DELETE FROM room_joined_servers WHERE room_id = ? AND joined_members <= 0", room_id
        )
    return before


async def joined_servers(
    reader: Database | Transaction, room_id: str, *, other_than: str | None = None
) -> set[str]:
    """The servers with a member joined to ``room_id`` (less ``other_than``)."""
    rows = await reader.fetchall(
        "SELECT server_name FROM room_joined_servers WHERE room_id = ? AND joined_members > 0",
        room_id,
    )
    return {r[0] for r in rows if r[0] != other_than}


async def is_server_joined(reader: Database | Transaction, room_id: str, server_name: str) -> bool:
    row = await reader.fetchone(
        "SELECT 1 FROM room_joined_servers"
        " WHERE room_id = ? AND server_name = ? AND joined_members > 0",
        room_id,
        server_name,
    )
    return row is not None
