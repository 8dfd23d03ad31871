"""Purging a room: every row of the room, in every table, in one transaction.

The tables are found in the schema rather than listed here, so a table added by a later
migration is purged without anyone remembering to add it: every table with a ``room_id``
column (rows of the room), every table with an ``event_id`` but no ``room_id`` column (rows of
the room's events), and the few keyed otherwise (state group entries, room upgrades). Tables
whose rows must outlive the room (its block, the status of the deletion doing the purge) are
named in :data:`KEPT_TABLES`.

The room's events still queued for other servers (the leaves of its local members, sent just
before the purge) must reach them: their outbox entries get the PDU itself, so the sender no
longer needs the ``events`` row. Invites into the room still queued are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.database import Database, Transaction, placeholders
from homeserver.storage.events import EventsStore
from homeserver.storage.state import StateStore

#: tables with a room_id column whose rows are kept when the room is purged.
KEPT_TABLES = frozenset({"blocked_rooms", "room_deletions", "purge_history"})

#: deleted last, in this order (foreign keys point at them).
_LAST = ("events", "state_groups", "rooms")


class LocalMembersRemain(Exception):
    """Local users are still joined: a purge without ``force`` refuses to run."""


@dataclass(frozen=True, slots=True)
class PurgeResult:
    #: table → rows deleted.
    deleted: dict[str, int]


async def tables_with_column(reader: Transaction | Database, column: str) -> set[str]:
    """The names of the tables in the current schema with a column named ``column``."""
    if reader.engine == "sqlite":
        rows = await reader.fetchall(
            "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p"
            " WHERE m.type = 'table' AND p.name = ?",
            column,
        )
    else:
        rows = await reader.fetchall(
            "SELECT c.table_name FROM information_schema.columns c"
            " JOIN information_schema.tables t ON t.table_schema = c.table_schema"
            " AND t.table_name = c.table_name"
            " WHERE c.table_schema = current_schema() AND c.column_name = ?"
            " AND t.table_type = 'BASE TABLE'",
            column,
        )
    return {r[0] for r in rows}


class RoomPurgeStore:
    def __init__(self, db: Database, events: EventsStore, state: StateStore) -> None:
        self.db = db
        self.events = events
        self.state = state

    async def purge_room(self, room_id: str, local_suffix: str, *, force: bool) -> PurgeResult:
        """Delete every row of ``room_id``. ``local_suffix`` is a LIKE pattern for local user
        IDs (see admin_rooms.like_suffix); without ``force`` a room with local users still
        joined is refused with :class:`LocalMembersRemain`."""
        return await self.db.run_in_transaction(
            "purge_room", self._purge_txn, room_id, local_suffix, force
        )

    async def _purge_txn(
        self, txn: Transaction, room_id: str, local_suffix: str, force: bool
    ) -> PurgeResult:
        # The room's row lock is the one event persistence takes: nothing is added meanwhile.
        await txn.lock_row("rooms", "room_id", room_id)
        if not force:
            joined = await txn.fetchval(
                "SELECT COUNT(*) FROM current_state_events WHERE room_id = ?"
                " AND type = 'm.room.member' AND membership = 'join'"
                " AND state_key LIKE ? ESCAPE '\\'",
                room_id,
                local_suffix,
            )
            if int(joined or 0) > 0:
                raise LocalMembersRemain(room_id)
        await self._detach_outbox_txn(txn, room_id)
        deleted: dict[str, int] = {}
        by_room = await tables_with_column(txn, "room_id") - KEPT_TABLES
        by_event = await tables_with_column(txn, "event_id") - by_room - KEPT_TABLES
        # Rows reached through the room's state groups and events first (they need them).
        deleted["state_group_entries"] = await txn.execute(
            "DELETE FROM state_group_entries WHERE state_group IN"
            " (SELECT id FROM state_groups WHERE room_id = ?)",
            room_id,
        )
        for table in sorted(by_event - {"state_group_entries"}):
            deleted[table] = await txn.execute(
                f"DELETE FROM {table} WHERE event_id IN"
                " (SELECT event_id FROM events WHERE room_id = ?)",
                room_id,
            )
        deleted["room_upgrades"] = await txn.execute(
            "DELETE FROM room_upgrades WHERE old_room_id = ? OR new_room_id = ?", room_id, room_id
        )
        for table in sorted(by_room - set(_LAST)):
            deleted[table] = await txn.execute(f"DELETE FROM {table} WHERE room_id = ?", room_id)
        for table in _LAST:
            deleted[table] = await txn.execute(f"DELETE FROM {table} WHERE room_id = ?", room_id)
        txn.call_after_commit(self._drop_caches)
        return PurgeResult(deleted)

    async def _detach_outbox_txn(self, txn: Transaction, room_id: str) -> None:
        """Make queued PDUs of the room self-contained; drop queued invites into it."""
        rows = await txn.fetchall("SELECT id, payload FROM federation_outbox")
        pdu_entries: dict[int, str] = {}
        invites: list[int] = []
        for entry_id, text in rows:
            payload = parse_json(text)
            if not isinstance(payload, dict):
                continue
            if payload.get("kind") == "invite" and payload.get("room_id") == room_id:
                invites.append(int(entry_id))
            elif payload.get("kind") == "pdu" and isinstance(payload.get("event_id"), str):
                pdu_entries[int(entry_id)] = payload["event_id"]
        if invites:
            await txn.execute(
                f"DELETE FROM federation_outbox WHERE id IN ({placeholders(len(invites))})",
                *invites,
            )
        if not pdu_entries:
            return
        events = await self.events.get_events(set(pdu_entries.values()), txn=txn)
        for entry_id, event_id in pdu_entries.items():
            event = events.get(event_id)
            if event is None or event.room_id != room_id:
                continue
            payload = {"kind": "pdu", "event_id": event_id, "pdu": event.federation_json()}
            await txn.execute(
                "UPDATE federation_outbox SET payload = ? WHERE id = ?",
                canonical_json_text(payload),
                entry_id,
            )

    def _drop_caches(self) -> None:
        # Purges are rare: dropping the whole caches is simpler than finding the room's entries.
        self.events.clear_cache()
        self.state.clear_cache()
