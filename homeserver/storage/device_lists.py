"""The device-list stream: which users' devices (or cross-signing keys) changed, and when, so
that /sync and /keys/changes can tell a client whose keys to fetch again; and who shares a room
with whom, which decides both who is told and which servers get ``m.device_list_update``."""

from __future__ import annotations

from collections.abc import Collection

from homeserver.storage.database import Database, Transaction, placeholders
from homeserver.storage.stream_ids import order_lock_key
from homeserver.storage.streams import (
    DEVICE_LISTS_STREAM,
    advance_stream_txn,
    get_stream_position,
)
from homeserver.types import domain_of

_CHUNK = 500

#: Members joined to a room that ``?`` is joined to (current state).
_ROOM_MATES = (
    "SELECT DISTINCT theirs.state_key FROM current_state_events mine"
    " JOIN current_state_events theirs ON theirs.room_id = mine.room_id"
    " WHERE mine.type = 'm.room.member' AND mine.state_key = ? AND mine.membership = 'join'"
    " AND theirs.type = 'm.room.member' AND theirs.membership = 'join'"
)


class DeviceListsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_position(self) -> int:
        return await get_stream_position(self.db, DEVICE_LISTS_STREAM)

    async def add_change_txn(
        self, txn: Transaction, user_id: str, device_ids: Collection[str]
    ) -> int:
        """Record that these devices of ``user_id`` changed (``""``: the cross-signing keys);
        returns the new stream position."""
        position = await advance_stream_txn(txn, DEVICE_LISTS_STREAM, order_key=user_id)
        await txn.executemany(
            "INSERT INTO device_list_changes (stream_id, user_id, device_id) VALUES (?, ?, ?)",
            [(position, user_id, d) for d in sorted(set(device_ids)) or [""]],
        )
        return position

    async def lock_users_txn(self, txn: Transaction, user_ids: Collection[str]) -> None:
        """Take the per-user lock :meth:`add_change_txn` takes (held until commit) for each of
        these users, in one order: a transaction that records changes of several users takes
        them here first, so that two such transactions cannot each hold one and wait for the
        other."""
        for user_id in sorted(set(user_ids)):
            await txn.advisory_lock(order_lock_key(DEVICE_LISTS_STREAM, user_id))

    async def get_user_last_position_txn(
        self, txn: Transaction, user_id: str, before: int
    ) -> int | None:
        """The user's newest change below ``before`` (an update's ``prev_id``)."""
        value = await txn.fetchval(
            "SELECT MAX(stream_id) FROM device_list_changes WHERE user_id = ? AND stream_id < ?",
            user_id,
            before,
        )
        return None if value is None else int(value)

    async def get_user_position(self, user_id: str) -> int:
        """The user's newest change (0: none), the ``stream_id`` of their device list."""
        value = await self.db.fetchval(
            "SELECT MAX(stream_id) FROM device_list_changes WHERE user_id = ?", user_id
        )
        return 0 if value is None else int(value)

    async def get_changed_users(
        self, after: int, upto: int, among: Collection[str] | None = None
    ) -> set[str]:
        """Users with a change in ``(after, upto]``, optionally only those in ``among``."""
        if after >= upto:
            return set()
        if among is None:
            rows = await self.db.fetchall(
                "SELECT DISTINCT user_id FROM device_list_changes"
                " WHERE stream_id > ? AND stream_id <= ?",
                after,
                upto,
            )
            return {r[0] for r in rows}
        changed: set[str] = set()
        ids = sorted(set(among))
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = await self.db.fetchall(
                "SELECT DISTINCT user_id FROM device_list_changes"
                f" WHERE user_id IN ({placeholders(len(chunk))})"
                " AND stream_id > ? AND stream_id <= ?",
                *chunk,
                after,
                upto,
            )
            changed.update(r[0] for r in rows)
        return changed

    async def get_users_sharing_a_room(self, user_id: str) -> set[str]:
        """Everyone joined to a room ``user_id`` is joined to, ``user_id`` included if it is
        joined anywhere."""
        rows = await self.db.fetchall(_ROOM_MATES, user_id)
        return {r[0] for r in rows}

    async def get_remote_servers_sharing_a_room_txn(
        self, txn: Transaction, user_id: str, our_server: str
    ) -> set[str]:
        """Other servers with a member joined to a room ``user_id`` is joined to."""
        rows = await txn.fetchall(_ROOM_MATES, user_id)
        servers = {domain_of(r[0]) for r in rows if ":" in r[0]}
        servers.discard(our_server)
        return servers

    async def local_users_share_a_room_with(self, user_id: str, our_server: str) -> bool:
        """Whether any user of ``our_server`` is joined to a room ``user_id`` is joined to
        (a remote user's device-list update concerns us only then)."""
        for mate in await self.get_users_sharing_a_room(user_id):
            if mate != user_id and ":" in mate and domain_of(mate) == our_server:
                return True
        return False
