"""Which room memberships moved between two stream positions, for the ``device_lists`` section
of /sync and GET /keys/changes: a user who starts (or stops) sharing a room with the requester
must have their keys fetched (or may be forgotten) even though their devices did not change."""

from __future__ import annotations

from collections.abc import Collection

from homeserver.storage.database import Database, placeholders

_CHUNK = 500
_VISIBLE = "outlier = FALSE AND rejected_reason IS NULL AND soft_failed = FALSE"


class DeviceListSharingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_member_changes(
        self, room_ids: Collection[str], after: int, upto: int
    ) -> dict[str, set[str]]:
        """room_id → the users (state keys) with a membership event in ``(after, upto]`` in
        that room; rooms without one are absent."""
        changes: dict[str, set[str]] = {}
        if after >= upto:
            return changes
        ids = sorted(set(room_ids))
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            rows = await self.db.fetchall(
                "SELECT DISTINCT room_id, state_key FROM events"
                f" WHERE room_id IN ({placeholders(len(chunk))}) AND type = 'm.room.member'"
                f" AND {_VISIBLE} AND stream_ordering > ? AND stream_ordering <= ?",
                *chunk,
                after,
                upto,
            )
            for room_id, state_key in rows:
                changes.setdefault(room_id, set()).add(state_key)
        return changes
