"""The admin API's reads over local media (``local_media``, migration 015): per-user usage
statistics, a user's media page, what an age/size sweep would delete, and the avatars
(profiles, the user directory, room avatars and members' avatars) a sweep keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.crypto.canonical_json import parse_json
from homeserver.storage.database import Database

#: order_by → SQL expression (Synapse's values for the statistics).
STATS_ORDERS = {
    "user_id": "m.user_id",
    "displayname": "p.displayname",
    "media_length": "media_length",
    "media_count": "media_count",
}
#: order_by → column (Synapse's values for a user's media list).
USER_MEDIA_ORDERS = {
    "media_id": "media_id",
    "upload_name": "upload_name",
    "created_ts": "created_ts",
    "last_access_ts": "created_ts",  # not kept for local media: its creation stands in
    "media_length": "media_length",
    "media_type": "media_type",
    "quarantined_by": "quarantined_by",
    "safe_from_quarantine": "safe_from_quarantine",
}


@dataclass(frozen=True, slots=True)
class UserMediaUsage:
    user_id: str
    displayname: str | None
    media_count: int
    media_length: int


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class AdminMediaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def usage_by_user(
        self,
        *,
        start: int,
        limit: int,
        order_by: str,
        backwards: bool,
        from_ts: int | None,
        until_ts: int | None,
        search_term: str | None,
    ) -> tuple[list[UserMediaUsage], int]:
        filters = ["m.sha256 IS NOT NULL"]
        args: list[object] = []
        if from_ts is not None:
            filters.append("m.created_ts >= ?")
            args.append(from_ts)
        if until_ts is not None:
            filters.append("m.created_ts <= ?")
            args.append(until_ts)
        if search_term:
            filters.append(
                "(LOWER(m.user_id) LIKE ? ESCAPE '\\'"
                " OR LOWER(p.displayname) LIKE ? ESCAPE '\\')"
            )
            args += [_like(search_term.lower()), _like(search_term.lower())]
        source = (
            " FROM local_media m LEFT JOIN profiles p ON p.user_id = m.user_id"
            f" WHERE {' AND '.join(filters)} GROUP BY m.user_id, p.displayname"
        )
        total = int(
            await self.db.fetchval(f"SELECT COUNT(*) FROM (SELECT m.user_id{source}) t", *args)
        )
        order = "DESC" if backwards else "ASC"
        rows = await self.db.fetchall(
            "SELECT m.user_id, p.displayname, COUNT(*) AS media_count,"
            f" COALESCE(SUM(m.media_length), 0) AS media_length{source}"
            f" ORDER BY {STATS_ORDERS[order_by]} {order}, m.user_id {order} LIMIT ? OFFSET ?",
            *args,
            limit,
            start,
        )
        return [UserMediaUsage(r[0], r[1], int(r[2]), int(r[3])) for r in rows], total

    async def media_of_user(
        self, user_id: str, *, start: int, limit: int, order_by: str, backwards: bool
    ) -> tuple[list[dict[str, Any]], int]:
        total = int(
            await self.db.fetchval("SELECT COUNT(*) FROM local_media WHERE user_id = ?", user_id)
        )
        order = "DESC" if backwards else "ASC"
        rows = await self.db.fetchall(
            "SELECT media_id, media_type, media_length, upload_name, created_ts,"
            " quarantined_by, safe_from_quarantine FROM local_media WHERE user_id = ?"
            f" ORDER BY {USER_MEDIA_ORDERS[order_by]} {order}, media_id {order} LIMIT ? OFFSET ?",
            user_id,
            limit,
            start,
        )
        media = [
            {
                "media_id": r[0],
                "media_type": r[1],
                "media_length": None if r[2] is None else int(r[2]),
                "upload_name": r[3],
                "created_ts": int(r[4]),
                "last_access_ts": int(r[4]),
                "quarantined_by": r[5],
                "safe_from_quarantine": bool(r[6]),
            }
            for r in rows
        ]
        return media, total

    async def media_ids_of_user(self, user_id: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT media_id FROM local_media WHERE user_id = ? ORDER BY media_id", user_id
        )
        return [r[0] for r in rows]

    async def sweep_candidates(self, before_ts: int, size_gt: int) -> list[str]:
        """Local media created before ``before_ts`` and larger than ``size_gt`` bytes, neither
        quarantined nor protected (Synapse's defaults)."""
        rows = await self.db.fetchall(
            "SELECT media_id FROM local_media WHERE created_ts < ? AND media_length > ?"
            " AND quarantined_by IS NULL AND safe_from_quarantine = ? ORDER BY media_id",
            before_ts,
            size_gt,
            False,
        )
        return [r[0] for r in rows]

    async def avatar_urls(self) -> set[str]:
        """Every mxc URI in use as an avatar: profiles, the user directory, rooms' current
        avatars and members' avatars in rooms' current state."""
        urls: set[str] = set()
        for sql in (
            "SELECT avatar_url FROM profiles WHERE avatar_url IS NOT NULL",
            "SELECT avatar_url FROM user_directory WHERE avatar_url IS NOT NULL",
        ):
            urls.update(r[0] for r in await self.db.fetchall(sql))
        rows = await self.db.fetchall(
            "SELECT e.json FROM current_state_events c JOIN events e ON e.event_id = c.event_id"
            " WHERE c.type IN ('m.room.avatar', 'm.room.member')"
        )
        for (text,) in rows:
            event = parse_json(text)
            content = event.get("content") if isinstance(event, dict) else None
            if isinstance(content, dict):
                for key in ("url", "avatar_url"):
                    if isinstance(content.get(key), str):
                        urls.add(content[key])
        return urls

    async def set_protected(self, media_id: str, protected: bool) -> bool:
        async with self.db.transaction("protect_media") as txn:
            return (
                await txn.execute(
                    "UPDATE local_media SET safe_from_quarantine = ? WHERE media_id = ?",
                    protected,
                    media_id,
                )
                > 0
            )
