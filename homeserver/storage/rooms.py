"""Rooms: the ``rooms`` row (version, creator, directory flag, lifecycle status) and the
lifecycle history.

Status changes are compare-and-set updates (``WHERE status = expected``), so the database row is
the upgrade lock shared by every process (DESIGN.md §3.2, §7). Which transitions are legal is
decided by ``homeserver/rooms/lifecycle.py``; this module only records them atomically.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction

ROOM_STATUSES = ("active", "upgrading", "tombstoned")

_ROOM_COLUMNS = (
    "room_id, room_version, creator, is_public, created_ts, status, upgrade_lock_holder,"
    " upgrade_lock_expires_ts, replacement_room_id, current_state_group"
)


@dataclass(frozen=True, slots=True)
class NewRoom:
    """A room to create (in the same transaction as its genesis events)."""

    room_id: str
    room_version: str
    creator: str | None
    created_ts: int
    is_public: bool = False


@dataclass(frozen=True, slots=True)
class RoomRecord:
    room_id: str
    room_version: str
    creator: str | None
    is_public: bool
    created_ts: int
    status: str
    upgrade_lock_holder: str | None
    upgrade_lock_expires_ts: int | None
    replacement_room_id: str | None
    current_state_group: int | None


@dataclass(frozen=True, slots=True)
class LifecycleTransition:
    room_id: str
    from_status: str | None
    to_status: str
    actor: str | None
    reason: str | None
    ts: int


class RoomsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- reads ---------------------------------------------------------------------------
    async def get_room(self, room_id: str, *, txn: Transaction | None = None) -> RoomRecord | None:
        row = await (txn or self.db.indexed).fetchone(
            f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE room_id = ?", room_id
        )
        if row is None:
            return None
        (room_id, version, creator, public, created, status, holder, expires, repl, group) = row
        return RoomRecord(
            room_id=room_id,
            room_version=version,
            creator=creator,
            is_public=bool(public),
            created_ts=int(created),
            status=status,
            upgrade_lock_holder=holder,
            upgrade_lock_expires_ts=None if expires is None else int(expires),
            replacement_room_id=repl,
            current_state_group=None if group is None else int(group),
        )

    async def get_public_room_ids(self) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT room_id FROM rooms WHERE is_public = TRUE ORDER BY room_id"
        )
        return [r[0] for r in rows]

    async def get_transitions(self, room_id: str) -> list[LifecycleTransition]:
        rows = await self.db.fetchall(
            "SELECT room_id, from_status, to_status, actor, reason, ts"
            " FROM room_lifecycle_transitions WHERE room_id = ? ORDER BY id",
            room_id,
        )
        return [LifecycleTransition(*r[:5], ts=int(r[5])) for r in rows]

    # --- writes --------------------------------------------------------------------------
    async def create_room_txn(self, txn: Transaction, room: NewRoom) -> None:
        """Insert the room row (status ``active``) and its first history entry."""
        await txn.execute(
            "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts, status)"
            " VALUES (?, ?, ?, ?, ?, 'active')",
            room.room_id,
            room.room_version,
            room.creator,
            room.is_public,
            room.created_ts,
        )
        await self._record_txn(
            txn, room.room_id, None, "active", room.creator, "created", room.created_ts
        )

    async def set_public(self, room_id: str, is_public: bool) -> bool:
        async with self.db.transaction("set_room_public") as txn:
            return await self.set_public_txn(txn, room_id, is_public)

    async def set_public_txn(self, txn: Transaction, room_id: str, is_public: bool) -> bool:
        changed = await txn.execute(
            "UPDATE rooms SET is_public = ? WHERE room_id = ?", is_public, room_id
        )
        return changed == 1

    async def transition_txn(
        self,
        txn: Transaction,
        room_id: str,
        from_status: str,
        to_status: str,
        *,
        actor: str | None,
        reason: str | None,
        ts: int,
        upgrade_lock_holder: str | None = None,
        upgrade_lock_expires_ts: int | None = None,
        replacement_room_id: str | None = None,
        upgrade_lock_instance: str | None = None,
    ) -> bool:
        """Move ``room_id`` from ``from_status`` to ``to_status`` if it is still in
        ``from_status``; record the transition. False (nothing written) if the status differed.

        The lock columns are set to the given values (None clears them); a given
        ``replacement_room_id`` is stored, None keeps the stored one."""
        if to_status not in ROOM_STATUSES:
            raise ValueError(f"unknown room status {to_status!r}")
        changed = await txn.execute(
            "UPDATE rooms SET status = ?, upgrade_lock_holder = ?, upgrade_lock_expires_ts = ?,"
            " upgrade_lock_instance = ?, replacement_room_id = COALESCE(?, replacement_room_id)"
            " WHERE room_id = ? AND status = ?",
            to_status,
            upgrade_lock_holder,
            upgrade_lock_expires_ts,
            upgrade_lock_instance,
            replacement_room_id,
            room_id,
            from_status,
        )
        if changed != 1:
            return False
        await self._record_txn(txn, room_id, from_status, to_status, actor, reason, ts)
        return True

    async def transition(
        self, room_id: str, from_status: str, to_status: str, **kw: object
    ) -> bool:
        """:meth:`transition_txn` in its own transaction."""
        async with self.db.transaction("room_transition") as txn:
            return await self.transition_txn(txn, room_id, from_status, to_status, **kw)  # type: ignore[arg-type]

    async def _record_txn(
        self,
        txn: Transaction,
        room_id: str,
        from_status: str | None,
        to_status: str,
        actor: str | None,
        reason: str | None,
        ts: int,
    ) -> None:
        await txn.execute(
            "INSERT INTO room_lifecycle_transitions"
            " (room_id, from_status, to_status, actor, reason, ts) VALUES (?, ?, ?, ?, ?, ?)",
            room_id,
            from_status,
            to_status,
            actor,
            reason,
            ts,
        )
