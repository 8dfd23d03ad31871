"""Users' reports of abuse (migration 034): events, rooms and users reported, and the admin
API's paged reads of them (Synapse's ``event_reports`` / ``room_reports`` / ``user_reports``).

Report ids are allocated inside the inserting transaction under an advisory lock (one per
table), so they are unique across processes and increase in the order reports arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.database import Database, Transaction

#: advisory lock keys, one per report table ("report" + a letter).
_ID_LOCKS = {
    "event_reports": 0x7265_706F_7274_65,
    "room_reports": 0x7265_706F_7274_72,
    "user_reports": 0x7265_706F_7274_75,
}


@dataclass(frozen=True, slots=True)
class EventReport:
    id: int
    received_ts: int
    room_id: str
    event_id: str
    user_id: str
    #: the reporter's request body (``reason``, ``score``).
    content: dict[str, Any]
    #: the reported event's sender, if we still have the event.
    sender: str | None


@dataclass(frozen=True, slots=True)
class UserReport:
    id: int
    received_ts: int
    target_user_id: str
    user_id: str
    reason: str


def _like(value: str) -> str:
    """A LIKE pattern (escape ``\\``) matching ``value`` anywhere, as Synapse's filters."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def _next_id(txn: Transaction, table: str) -> int:
    await txn.advisory_lock(_ID_LOCKS[table])
    return int(await txn.fetchval(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}"))


def _event_report(row: tuple[Any, ...]) -> EventReport:
    content = parse_json(row[5])
    return EventReport(
        int(row[0]),
        int(row[1]),
        row[2],
        row[3],
        row[4],
        content if isinstance(content, dict) else {},
        row[6],
    )


class ReportsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- writes -----------------------------------------------------------------------------
    async def add_event_report(
        self,
        *,
        room_id: str,
        event_id: str,
        user_id: str,
        reason: str | None,
        content: dict[str, Any],
        received_ts: int,
    ) -> int:
        async with self.db.transaction("add_event_report") as txn:
            report_id = await _next_id(txn, "event_reports")
            await txn.execute(
                "INSERT INTO event_reports"
                " (id, received_ts, room_id, event_id, user_id, reason, content)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                report_id,
                received_ts,
                room_id,
                event_id,
                user_id,
                reason,
                canonical_json_text(content),
            )
        return report_id

    async def add_room_report(
        self, *, room_id: str, user_id: str, reason: str, received_ts: int
    ) -> int:
        async with self.db.transaction("add_room_report") as txn:
            report_id = await _next_id(txn, "room_reports")
            await txn.execute(
                "INSERT INTO room_reports (id, received_ts, room_id, user_id, reason)"
                " VALUES (?, ?, ?, ?, ?)",
                report_id,
                received_ts,
                room_id,
                user_id,
                reason,
            )
        return report_id

    async def add_user_report(
        self, *, target_user_id: str, user_id: str, reason: str, received_ts: int
    ) -> int:
        async with self.db.transaction("add_user_report") as txn:
            report_id = await _next_id(txn, "user_reports")
            await txn.execute(
                "INSERT INTO user_reports (id, received_ts, target_user_id, user_id, reason)"
                " VALUES (?, ?, ?, ?, ?)",
                report_id,
                received_ts,
                target_user_id,
                user_id,
                reason,
            )
        return report_id

    # --- event reports ----------------------------------------------------------------------
    async def list_event_reports(
        self,
        *,
        start: int,
        limit: int,
        backwards: bool,
        user_id: str | None = None,
        room_id: str | None = None,
        event_sender: str | None = None,
    ) -> tuple[list[EventReport], int]:
        """A page of event reports (newest first when ``backwards``) and how many match.
        ``user_id`` and ``room_id`` match as substrings, ``event_sender`` exactly (Synapse)."""
        filters: list[str] = []
        args: list[object] = []
        if user_id:
            filters.append("r.user_id LIKE ? ESCAPE '\\'")
            args.append(_like(user_id))
        if room_id:
            filters.append("r.room_id LIKE ? ESCAPE '\\'")
            args.append(_like(room_id))
        if event_sender:
            filters.append("e.sender = ?")
            args.append(event_sender)
        where = f" WHERE {' AND '.join(filters)}" if filters else ""
        source = " FROM event_reports r LEFT JOIN events e ON e.event_id = r.event_id"
        total = int(await self.db.fetchval(f"SELECT COUNT(*){source}{where}", *args))
        order = "DESC" if backwards else "ASC"
        rows = await self.db.fetchall(
            "SELECT r.id, r.received_ts, r.room_id, r.event_id, r.user_id, r.content, e.sender"
            f"{source}{where} ORDER BY r.received_ts {order}, r.id {order} LIMIT ? OFFSET ?",
            *args,
            limit,
            start,
        )
        return [_event_report(row) for row in rows], total

    async def get_event_report(self, report_id: int) -> EventReport | None:
        row = await self.db.fetchone(
            "SELECT r.id, r.received_ts, r.room_id, r.event_id, r.user_id, r.content, e.sender"
            " FROM event_reports r LEFT JOIN events e ON e.event_id = r.event_id"
            " WHERE r.id = ?",
            report_id,
        )
        return _event_report(row) if row is not None else None

    async def delete_event_report(self, report_id: int) -> bool:
        async with self.db.transaction("delete_event_report") as txn:
            return await txn.execute("DELETE FROM event_reports WHERE id = ?", report_id) > 0

    # --- user reports -----------------------------------------------------------------------
    async def list_user_reports(
        self,
        *,
        start: int,
        limit: int,
        backwards: bool,
        user_id: str | None = None,
        target_user_id: str | None = None,
    ) -> tuple[list[UserReport], int]:
        filters: list[str] = []
        args: list[object] = []
        if user_id:
            filters.append("user_id LIKE ? ESCAPE '\\'")
            args.append(_like(user_id))
        if target_user_id:
            filters.append("target_user_id LIKE ? ESCAPE '\\'")
            args.append(_like(target_user_id))
        where = f" WHERE {' AND '.join(filters)}" if filters else ""
        total = int(await self.db.fetchval(f"SELECT COUNT(*) FROM user_reports{where}", *args))
        order = "DESC" if backwards else "ASC"
        rows = await self.db.fetchall(
            "SELECT id, received_ts, target_user_id, user_id, reason FROM user_reports"
            f"{where} ORDER BY received_ts {order}, id {order} LIMIT ? OFFSET ?",
            *args,
            limit,
            start,
        )
        return [UserReport(int(r[0]), int(r[1]), r[2], r[3], r[4]) for r in rows], total

    async def get_user_report(self, report_id: int) -> UserReport | None:
        row = await self.db.fetchone(
            "SELECT id, received_ts, target_user_id, user_id, reason FROM user_reports"
            " WHERE id = ?",
            report_id,
        )
        return UserReport(int(row[0]), int(row[1]), row[2], row[3], row[4]) if row else None

    async def delete_user_report(self, report_id: int) -> bool:
        async with self.db.transaction("delete_user_report") as txn:
            return await txn.execute("DELETE FROM user_reports WHERE id = ?", report_id) > 0
