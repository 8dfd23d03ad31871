"""What the admin API shows of upgrades that did not finish: rooms left ``upgrading`` (with the
lock's holder and lease, and since when) and the failures recorded from
``room.upgrade.failed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database

#: How many failures are kept: the oldest go as new ones come (the list is for recent trouble;
#: the audit log has the full history).
KEEP_FAILURES = 10_000


@dataclass(frozen=True, slots=True)
class StuckUpgrade:
    room_id: str
    room_version: str
    lock_holder: str | None
    lock_expires_ts: int | None
    #: when the room went ``upgrading`` (None if the history has no such entry).
    since_ts: int | None
    #: the reason recorded on that transition (names the target version and requester).
    reason: str | None


@dataclass(frozen=True, slots=True)
class UpgradeFailure:
    room_id: str
    reason: str
    ts: int


class UpgradeAuditStore:
    def __init__(self, db: Database, keep_failures: int = KEEP_FAILURES) -> None:
        self.db = db
        self.keep_failures = keep_failures

    async def get_stuck_upgrades(self) -> list[StuckUpgrade]:
        """Every room whose status is ``upgrading``, with the transition that made it so."""
        rows = await self.db.fetchall(
            "SELECT r.room_id, r.room_version, r.upgrade_lock_holder, r.upgrade_lock_expires_ts,"
            " t.ts, t.reason FROM rooms r"
            " LEFT JOIN room_lifecycle_transitions t ON t.id = ("
            "   SELECT MAX(id) FROM room_lifecycle_transitions"
            "   WHERE room_id = r.room_id AND to_status = 'upgrading')"
            " WHERE r.status = 'upgrading' ORDER BY r.room_id"
        )
        return [
            StuckUpgrade(
                room_id=room_id,
                room_version=version,
                lock_holder=holder,
                lock_expires_ts=None if expires is None else int(expires),
                since_ts=None if since is None else int(since),
                reason=reason,
            )
            for room_id, version, holder, expires, since, reason in rows
        ]

    async def record_failure(self, room_id: str, reason: str, ts: int) -> None:
        """Record one failure and forget those beyond the newest :attr:`keep_failures`."""
        async with self.db.transaction("record_upgrade_failure") as txn:
            await txn.execute(
                "INSERT INTO room_upgrade_failures (room_id, reason, ts) VALUES (?, ?, ?)",
                room_id,
                reason,
                ts,
            )
            newest = await txn.fetchval("SELECT MAX(id) FROM room_upgrade_failures")
            await txn.execute(
                "DELETE FROM room_upgrade_failures WHERE id <= ?",
                int(newest) - self.keep_failures,
            )

    async def get_recent_failures(self, limit: int) -> list[UpgradeFailure]:
        """The newest ``limit`` failures, newest first."""
        rows = await self.db.fetchall(
            "SELECT room_id, reason, ts FROM room_upgrade_failures ORDER BY id DESC LIMIT ?",
            limit,
        )
        return [UpgradeFailure(room_id, reason, int(ts)) for room_id, reason, ts in rows]

    async def count_failures(self) -> int:
        return int(await self.db.fetchval("SELECT COUNT(*) FROM room_upgrade_failures"))
