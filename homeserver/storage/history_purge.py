"""Purging a room's history (``POST /_synapse/admin/v1/purge_history``): the records of the
requests (migration 035) and the purge itself, one transaction under the room's lock.

What goes: the room's events at a depth below the cut-off that are not state events, not
forward extremities, not outliers, and (unless ``delete_local_events``) not sent by our users;
with each, its rows keyed by event ID (edges, auth edges, state-group links, relations, search
words, notifications and queued pushes, redaction records, media references, transaction IDs).

What stays, so that the room's DAG still holds (as Synapse, which also never purges state
events): every state event — so the current state, every kept event's auth chain and what state
resolution reads are whole —, the forward extremities, every state group (a group is a delta on
its ancestors: deleting one would break its descendants), and the kept events' edges to purged
events, which then read as gaps that backfill and ``get_missing_events`` answer around. Read
receipts on a purged event move to the newest kept event before it, so unread counts do not
restart; federation entries still queued for a purged event carry the PDU itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.database import Database, Transaction, in_chunks, placeholders
from homeserver.storage.events import EventsStore
from homeserver.storage.state import StateStore

PURGE_STATUSES = ("scheduled", "active", "complete", "failed")
_COLUMNS = "purge_id, room_id, status, params, deleted, error, created_ts, updated_ts"
#: rows keyed by the purged event's ID, deleted with it (``events`` itself last).
EVENT_TABLES = (
    "event_edges",
    "event_auth",
    "event_to_state_groups",
    "event_relations",
    "event_search",
    "event_push_actions",
    "push_outbox",
    "redactions",
    "media_references",
    "event_txn_ids",
)
#: of those, the tables keyed by (room_id, event_id, …).
ROOM_KEYED_TABLES = frozenset({"event_edges", "event_auth"})
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class PurgeRecord:
    purge_id: str
    room_id: str
    status: str
    params: dict[str, Any]
    deleted: int
    error: str | None
    created_ts: int
    updated_ts: int


def _record(row: tuple[Any, ...]) -> PurgeRecord:
    params = parse_json(row[3])
    return PurgeRecord(
        row[0],
        row[1],
        row[2],
        params if isinstance(params, dict) else {},
        int(row[4]),
        row[5],
        int(row[6]),
        int(row[7]),
    )


class HistoryPurgeStore:
    def __init__(self, db: Database, events: EventsStore, state: StateStore) -> None:
        self.db = db
        self.events = events
        self.state = state

    # --- records ----------------------------------------------------------------------------
    async def add(self, purge_id: str, room_id: str, params: dict[str, Any], now: int) -> bool:
        """Record a scheduled purge; False (nothing written) while another purge of the room
        is unfinished."""
        async with self.db.transaction("add_purge_history") as txn:
            await txn.lock_row("rooms", "room_id", room_id)
            busy = await txn.fetchval(
                "SELECT 1 FROM purge_history WHERE room_id = ?"
                " AND status IN ('scheduled', 'active')",
                room_id,
            )
            if busy:
                return False
            await txn.execute(
                f"INSERT INTO purge_history ({_COLUMNS})"
                " VALUES (?, ?, 'scheduled', ?, 0, NULL, ?, ?)",
                purge_id,
                room_id,
                canonical_json_text(params),
                now,
                now,
            )
        return True

    async def update(
        self, purge_id: str, *, status: str, now: int, deleted: int = 0, error: str | None = None
    ) -> None:
        if status not in PURGE_STATUSES:
            raise ValueError(f"unknown purge status {status!r}")
        async with self.db.transaction("update_purge_history") as txn:
            await txn.execute(
                "UPDATE purge_history SET status = ?, deleted = ?, error = ?, updated_ts = ?"
                " WHERE purge_id = ?",
                status,
                deleted,
                error,
                now,
                purge_id,
            )

    async def get(self, purge_id: str) -> PurgeRecord | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM purge_history WHERE purge_id = ?", purge_id
        )
        return None if row is None else _record(row)

    async def get_all(self) -> list[PurgeRecord]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM purge_history ORDER BY created_ts, purge_id"
        )
        return [_record(r) for r in rows]

    async def get_unfinished(self) -> list[PurgeRecord]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM purge_history WHERE status IN ('scheduled', 'active')"
            " ORDER BY created_ts, purge_id"
        )
        return [_record(r) for r in rows]

    # --- the cut-off ------------------------------------------------------------------------
    async def depth_of(self, room_id: str, event_id: str) -> int | None:
        value = await self.db.fetchval(
            "SELECT topological_ordering FROM events WHERE event_id = ? AND room_id = ?",
            event_id,
            room_id,
        )
        return None if value is None else int(value)

    async def depth_at_ts(self, room_id: str, ts: int) -> int | None:
        """The cut-off for "before ``ts``": the depth of the room's first timeline event at or
        after ``ts`` (or one past the deepest when all are older); None if no event is older."""
        older = await self.db.fetchval(
            "SELECT 1 FROM events WHERE room_id = ? AND origin_server_ts < ? AND outlier = ?",
            room_id,
            ts,
            False,
        )
        if not older:
            return None
        first_after = await self.db.fetchval(
            "SELECT MIN(topological_ordering) FROM events WHERE room_id = ?"
            " AND origin_server_ts >= ? AND outlier = ?",
            room_id,
            ts,
            False,
        )
        if first_after is not None:
            return int(first_after)
        deepest = await self.db.fetchval(
            "SELECT MAX(topological_ordering) FROM events WHERE room_id = ?", room_id
        )
        return int(deepest or 0) + 1

    # --- the purge --------------------------------------------------------------------------
    async def purge(
        self, room_id: str, before_depth: int, *, delete_local: bool, local_suffix: str
    ) -> int:
        """Purge what the module docstring says; the number of events deleted."""
        return await self.db.run_in_transaction(
            "purge_history", self._purge_txn, room_id, before_depth, delete_local, local_suffix
        )

    async def _purge_txn(
        self,
        txn: Transaction,
        room_id: str,
        before_depth: int,
        delete_local: bool,
        local_suffix: str,
    ) -> int:
        await txn.lock_row("rooms", "room_id", room_id)
        local_clause = "" if delete_local else " AND e.sender NOT LIKE ? ESCAPE '\\'"
        args: list[object] = [room_id, before_depth, False]
        if not delete_local:
            args.append(local_suffix)
        rows = await txn.fetchall(
            "SELECT e.event_id, e.stream_ordering FROM events e"
            " WHERE e.room_id = ? AND e.topological_ordering < ? AND e.outlier = ?"
            f" AND e.state_key IS NULL{local_clause}"
            " AND NOT EXISTS (SELECT 1 FROM event_forward_extremities f"
            "  WHERE f.room_id = e.room_id AND f.event_id = e.event_id)",
            *args,
        )
        doomed = {r[0]: int(r[1]) for r in rows}
        if not doomed:
            return 0
        receipts = await self._receipts_on_txn(txn, room_id, doomed)
        await self._detach_outbox_txn(txn, doomed)
        ids = sorted(doomed)
        for chunk in in_chunks(ids, _CHUNK):
            marks = placeholders(len(chunk))
            for table in EVENT_TABLES:
                # The edges are keyed by room first (migration 038): named, it is a seek.
                room_clause = "room_id = ? AND " if table in ROOM_KEYED_TABLES else ""
                room_arg = (room_id,) if room_clause else ()
                await txn.execute(
                    f"DELETE FROM {table} WHERE {room_clause}event_id IN ({marks})",
                    *room_arg,
                    *chunk,
                )
            await txn.execute(f"DELETE FROM events WHERE event_id IN ({marks})", *chunk)
        await self._move_receipts_txn(txn, room_id, receipts)
        txn.call_after_commit(self._drop_caches)
        return len(ids)

    async def _receipts_on_txn(
        self, txn: Transaction, room_id: str, doomed: dict[str, int]
    ) -> list[tuple[str, str, str, int]]:
        """(receipt type, user, thread, position) of the room's receipts on purged events."""
        rows = await txn.fetchall(
            "SELECT receipt_type, user_id, thread_id, event_id FROM receipts WHERE room_id = ?",
            room_id,
        )
        return [(r[0], r[1], r[2], doomed[r[3]]) for r in rows if r[3] in doomed]

    async def _move_receipts_txn(
        self, txn: Transaction, room_id: str, receipts: list[tuple[str, str, str, int]]
    ) -> None:
        """Once the events are gone: each receipt that was on one points at the newest kept
        timeline event before it (or goes, when none is)."""
        for receipt_type, user_id, thread_id, position in receipts:
            key = (room_id, receipt_type, user_id, thread_id)
            replacement = await txn.fetchval(
                "SELECT event_id FROM events WHERE room_id = ? AND stream_ordering < ?"
                " AND outlier = ? ORDER BY stream_ordering DESC LIMIT 1",
                room_id,
                position,
                False,
            )
            if replacement is None:
                await txn.execute(
                    "DELETE FROM receipts WHERE room_id = ? AND receipt_type = ?"
                    " AND user_id = ? AND thread_id = ?",
                    *key,
                )
            else:
                await txn.execute(
                    "UPDATE receipts SET event_id = ? WHERE room_id = ? AND receipt_type = ?"
                    " AND user_id = ? AND thread_id = ?",
                    replacement,
                    *key,
                )

    async def _detach_outbox_txn(self, txn: Transaction, doomed: dict[str, int]) -> None:
        """Queued PDUs of purged events get the PDU itself (the sender no longer finds it)."""
        rows = await txn.fetchall("SELECT id, payload FROM federation_outbox")
        wanted: dict[int, str] = {}
        for entry_id, text in rows:
            payload = parse_json(text)
            if (
                isinstance(payload, dict)
                and payload.get("kind") == "pdu"
                and payload.get("event_id") in doomed
                and "pdu" not in payload
            ):
                wanted[int(entry_id)] = payload["event_id"]
        if not wanted:
            return
        events = await self.events.get_events(set(wanted.values()), txn=txn)
        for entry_id, event_id in wanted.items():
            event = events.get(event_id)
            if event is None:
                continue
            payload = {"kind": "pdu", "event_id": event_id, "pdu": event.federation_json()}
            await txn.execute(
                "UPDATE federation_outbox SET payload = ? WHERE id = ?",
                canonical_json_text(payload),
                entry_id,
            )

    def _drop_caches(self) -> None:
        self.events.clear_cache()
        self.state.clear_cache()
