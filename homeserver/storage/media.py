"""The media repository's rows: local media (and MXC URIs created for a later upload), the
cache of other servers' media, thumbnails, and which events name which media.

Files are content-addressed (homeserver/media/files.py): a row names a file by its SHA-256, so
one file may back several rows; :meth:`MediaStore.unreferenced_hashes` says which files no row
names any more and may be removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Transaction, placeholders

_CHUNK = 500

#: ``mxc://<server name>/<media id>``; the media ID grammar is the spec's ([A-Za-z0-9_-]).
MXC_PATTERN = re.compile(r"^mxc://([^/]{1,255})/([A-Za-z0-9_-]{1,255})$")

MediaKey = tuple[str, str]


def parse_mxc(uri: object) -> MediaKey | None:
    """``(server_name, media_id)`` of an ``mxc://`` URI, or None."""
    if not isinstance(uri, str):
        return None
    match = MXC_PATTERN.match(uri)
    return (match.group(1), match.group(2)) if match else None


def media_in_content(content: Mapping[str, Any]) -> set[MediaKey]:
    """The media an event's content names: ``url``, ``info.thumbnail_url``, ``file.url`` and
    ``info.thumbnail_file.url`` (m.room.message attachments, stickers, avatars)."""
    found: set[MediaKey] = set()
    candidates: list[object] = [content.get("url")]
    info = content.get("info")
    if isinstance(info, Mapping):
        candidates.append(info.get("thumbnail_url"))
        thumbnail_file = info.get("thumbnail_file")
        if isinstance(thumbnail_file, Mapping):
            candidates.append(thumbnail_file.get("url"))
    file = content.get("file")
    if isinstance(file, Mapping):
        candidates.append(file.get("url"))
    for candidate in candidates:
        key = parse_mxc(candidate)
        if key is not None:
            found.add(key)
    return found


@dataclass(frozen=True, slots=True)
class LocalMedia:
    media_id: str
    user_id: str
    created_ts: int
    media_type: str | None
    media_length: int | None
    upload_name: str | None
    #: None while the MXC URI was created but nothing uploaded yet.
    sha256: str | None
    unused_expires_ts: int | None
    authenticated: bool
    quarantined_by: str | None
    safe_from_quarantine: bool


@dataclass(frozen=True, slots=True)
class RemoteMedia:
    media_origin: str
    media_id: str
    media_type: str
    media_length: int
    upload_name: str | None
    sha256: str
    created_ts: int
    last_access_ts: int
    authenticated: bool
    quarantined_by: str | None


@dataclass(frozen=True, slots=True)
class Thumbnail:
    width: int
    height: int
    method: str
    media_type: str
    media_length: int
    sha256: str


_LOCAL_COLUMNS = (
    "media_id, user_id, created_ts, media_type, media_length, upload_name, sha256,"
    " unused_expires_ts, authenticated, quarantined_by, safe_from_quarantine"
)
_REMOTE_COLUMNS = (
    "media_origin, media_id, media_type, media_length, upload_name, sha256, created_ts,"
    " last_access_ts, authenticated, quarantined_by"
)


def _local(row: Sequence[Any]) -> LocalMedia:
    return LocalMedia(
        media_id=row[0],
        user_id=row[1],
        created_ts=int(row[2]),
        media_type=row[3],
        media_length=None if row[4] is None else int(row[4]),
        upload_name=row[5],
        sha256=row[6],
        unused_expires_ts=None if row[7] is None else int(row[7]),
        authenticated=bool(row[8]),
        quarantined_by=row[9],
        safe_from_quarantine=bool(row[10]),
    )


def _remote(row: Sequence[Any]) -> RemoteMedia:
    return RemoteMedia(
        media_origin=row[0],
        media_id=row[1],
        media_type=row[2],
        media_length=int(row[3]),
        upload_name=row[4],
        sha256=row[5],
        created_ts=int(row[6]),
        last_access_ts=int(row[7]),
        authenticated=bool(row[8]),
        quarantined_by=row[9],
    )


@dataclass(frozen=True, slots=True)
class UploadContent:
    """What an upload stored: the file's hash and what the client said about it."""

    sha256: str
    media_length: int
    media_type: str
    upload_name: str | None


class PendingOutcome:
    STORED = "stored"
    NOT_FOUND = "not_found"
    NOT_YOURS = "not_yours"
    ALREADY_UPLOADED = "already_uploaded"
    EXPIRED = "expired"


async def insert_references_txn(txn: Transaction, events: Iterable[Any]) -> None:
    """Record the media each accepted event names (called from event persistence)."""
    rows: list[tuple[str, str, str, str]] = []
    for event in events:
        if event.internal.rejected_reason is not None:
            continue
        content = event.content
        if not isinstance(content, Mapping):
            continue
        for origin, media_id in media_in_content(content):
            rows.append((event.event_id, event.room_id, origin, media_id))
    if rows:
        await txn.executemany(
            "INSERT INTO media_references (event_id, room_id, media_origin, media_id)"
            " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows,
        )


class MediaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- local media ------------------------------------------------------------------------

    async def get_local(self, media_id: str) -> LocalMedia | None:
        row = await self.db.fetchone(
            f"SELECT {_LOCAL_COLUMNS} FROM local_media WHERE media_id = ?", media_id
        )
        return None if row is None else _local(row)

    async def store_local(
        self,
        media_id: str,
        user_id: str,
        now: int,
        content: UploadContent,
        *,
        authenticated: bool,
    ) -> None:
        async with self.db.transaction("store_local_media") as txn:
            await txn.execute(
                "INSERT INTO local_media (media_id, user_id, created_ts, media_type,"
                " media_length, upload_name, sha256, authenticated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                media_id,
                user_id,
                now,
                content.media_type,
                content.media_length,
                content.upload_name,
                content.sha256,
                authenticated,
            )

    async def create_pending(
        self, media_id: str, user_id: str, now: int, expires_ts: int, max_pending: int
    ) -> bool:
        """Reserve ``media_id`` for a later upload by ``user_id``; False when the user already
        has ``max_pending`` reservations waiting."""
        return await self.db.run_in_transaction(
            "create_pending_media",
            self._create_pending_txn,
            media_id,
            user_id,
            now,
            expires_ts,
            max_pending,
        )

    async def _create_pending_txn(
        self,
        txn: Transaction,
        media_id: str,
        user_id: str,
        now: int,
        expires_ts: int,
        max_pending: int,
    ) -> bool:
        # Expired reservations are dropped here, so a user's table of them stays bounded.
        await txn.execute(
            "DELETE FROM local_media WHERE user_id = ? AND sha256 IS NULL"
            " AND unused_expires_ts <= ?",
            user_id,
            now,
        )
        pending = await txn.fetchval(
            "SELECT COUNT(*) FROM local_media WHERE user_id = ? AND sha256 IS NULL", user_id
        )
        if int(pending or 0) >= max_pending:
            return False
        await txn.execute(
            "INSERT INTO local_media (media_id, user_id, created_ts, unused_expires_ts)"
            " VALUES (?, ?, ?, ?)",
            media_id,
            user_id,
            now,
            expires_ts,
        )
        return True

    async def fill_pending(
        self,
        media_id: str,
        user_id: str,
        now: int,
        content: UploadContent,
        *,
        authenticated: bool,
    ) -> str:
        """Put ``content`` under a reserved ``media_id``; a :class:`PendingOutcome`."""
        return await self.db.run_in_transaction(
            "fill_pending_media",
            self._fill_pending_txn,
            media_id,
            user_id,
            now,
            content,
            authenticated,
        )

    async def _fill_pending_txn(
        self,
        txn: Transaction,
        media_id: str,
        user_id: str,
        now: int,
        content: UploadContent,
        authenticated: bool,
    ) -> str:
        await txn.lock_row("local_media", "media_id", media_id)
        row = await txn.fetchone(
            "SELECT user_id, sha256, unused_expires_ts FROM local_media WHERE media_id = ?",
            media_id,
        )
        if row is None:
            return PendingOutcome.NOT_FOUND
        owner, sha256, expires = row
        if owner != user_id:
            return PendingOutcome.NOT_YOURS
        if sha256 is not None:
            return PendingOutcome.ALREADY_UPLOADED
        if expires is not None and int(expires) <= now:
            return PendingOutcome.EXPIRED
        await txn.execute(
            "UPDATE local_media SET media_type = ?, media_length = ?, upload_name = ?,"
            " sha256 = ?, unused_expires_ts = NULL, authenticated = ? WHERE media_id = ?",
            content.media_type,
            content.media_length,
            content.upload_name,
            content.sha256,
            authenticated,
            media_id,
        )
        return PendingOutcome.STORED

    async def delete_local(self, media_id: str, server_name: str) -> list[str]:
        """Delete the media and its thumbnails' rows; the hashes they named."""
        async with self.db.transaction("delete_local_media") as txn:
            hashes = [
                r[0]
                for r in await txn.fetchall(
                    "SELECT sha256 FROM local_media WHERE media_id = ? AND sha256 IS NOT NULL",
                    media_id,
                )
            ]
            hashes += await self._delete_thumbnails_txn(txn, server_name, media_id)
            await txn.execute("DELETE FROM local_media WHERE media_id = ?", media_id)
        return hashes

    async def _delete_thumbnails_txn(
        self, txn: Transaction, origin: str, media_id: str
    ) -> list[str]:
        rows = await txn.fetchall(
            "SELECT sha256 FROM media_thumbnails WHERE media_origin = ? AND media_id = ?",
            origin,
            media_id,
        )
        await txn.execute(
            "DELETE FROM media_thumbnails WHERE media_origin = ? AND media_id = ?",
            origin,
            media_id,
        )
        return [r[0] for r in rows]

    # --- remote media -----------------------------------------------------------------------

    async def get_remote(self, origin: str, media_id: str) -> RemoteMedia | None:
        row = await self.db.fetchone(
            f"SELECT {_REMOTE_COLUMNS} FROM remote_media_cache"
            " WHERE media_origin = ? AND media_id = ?",
            origin,
            media_id,
        )
        return None if row is None else _remote(row)

    async def store_remote(self, media: RemoteMedia) -> None:
        async with self.db.transaction("store_remote_media") as txn:
            await txn.execute(
                f"INSERT INTO remote_media_cache ({_REMOTE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (media_origin, media_id) DO NOTHING",
                media.media_origin,
                media.media_id,
                media.media_type,
                media.media_length,
                media.upload_name,
                media.sha256,
                media.created_ts,
                media.last_access_ts,
                media.authenticated,
                media.quarantined_by,
            )

    async def touch_remote(self, origin: str, media_id: str, now: int) -> None:
        async with self.db.transaction("touch_remote_media") as txn:
            await txn.execute(
                "UPDATE remote_media_cache SET last_access_ts = ?"
                " WHERE media_origin = ? AND media_id = ?",
                now,
                origin,
                media_id,
            )

    async def purge_remote_cache(self, before_ts: int) -> tuple[int, list[str]]:
        """Forget cached remote media last read before ``before_ts`` (quarantined media is
        kept, so it stays refused); the count and the hashes the rows named."""
        async with self.db.transaction("purge_remote_media_cache") as txn:
            rows = await txn.fetchall(
                "SELECT media_origin, media_id, sha256 FROM remote_media_cache"
                " WHERE last_access_ts < ? AND quarantined_by IS NULL",
                before_ts,
            )
            hashes: list[str] = []
            for origin, media_id, sha256 in rows:
                hashes.append(sha256)
                hashes += await self._delete_thumbnails_txn(txn, origin, media_id)
                await txn.execute(
                    "DELETE FROM remote_media_cache WHERE media_origin = ? AND media_id = ?",
                    origin,
                    media_id,
                )
        return len(rows), hashes

    async def delete_remote(self, origin: str, media_id: str) -> list[str]:
        async with self.db.transaction("delete_remote_media") as txn:
            hashes = [
                r[0]
                for r in await txn.fetchall(
                    "SELECT sha256 FROM remote_media_cache WHERE media_origin = ? AND media_id = ?",
                    origin,
                    media_id,
                )
            ]
            hashes += await self._delete_thumbnails_txn(txn, origin, media_id)
            await txn.execute(
                "DELETE FROM remote_media_cache WHERE media_origin = ? AND media_id = ?",
                origin,
                media_id,
            )
        return hashes

    # --- thumbnails -------------------------------------------------------------------------

    async def get_thumbnails(self, origin: str, media_id: str) -> list[Thumbnail]:
        rows = await self.db.fetchall(
            "SELECT width, height, method, media_type, media_length, sha256"
            " FROM media_thumbnails WHERE media_origin = ? AND media_id = ?",
            origin,
            media_id,
        )
        return [Thumbnail(int(r[0]), int(r[1]), r[2], r[3], int(r[4]), r[5]) for r in rows]

    async def store_thumbnail(self, origin: str, media_id: str, thumbnail: Thumbnail) -> None:
        async with self.db.transaction("store_thumbnail") as txn:
            await txn.execute(
                "INSERT INTO media_thumbnails (media_origin, media_id, width, height, method,"
                " media_type, media_length, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                origin,
                media_id,
                thumbnail.width,
                thumbnail.height,
                thumbnail.method,
                thumbnail.media_type,
                thumbnail.media_length,
                thumbnail.sha256,
            )

    # --- quarantine -------------------------------------------------------------------------

    async def set_quarantine(
        self, origin: str, media_id: str, local: bool, admin: str | None
    ) -> bool:
        """Quarantine (``admin``) or release (None) one media; False when unknown (local) or
        refused because it is marked safe from quarantine."""
        async with self.db.transaction("quarantine_media") as txn:
            if local:
                if admin is not None:
                    changed = await txn.execute(
                        "UPDATE local_media SET quarantined_by = ? WHERE media_id = ?"
                        " AND safe_from_quarantine = ?",
                        admin,
                        media_id,
                        False,
                    )
                else:
                    changed = await txn.execute(
                        "UPDATE local_media SET quarantined_by = NULL WHERE media_id = ?",
                        media_id,
                    )
                return changed > 0
            await txn.execute(
                "UPDATE remote_media_cache SET quarantined_by = ?"
                " WHERE media_origin = ? AND media_id = ?",
                admin,
                origin,
                media_id,
            )
            return True

    # --- what events name -------------------------------------------------------------------

    async def media_of_room(self, room_id: str) -> list[MediaKey]:
        rows = await self.db.fetchall(
            "SELECT DISTINCT media_origin, media_id FROM media_references WHERE room_id = ?"
            " ORDER BY media_origin, media_id",
            room_id,
        )
        return [(r[0], r[1]) for r in rows]

    async def unreferenced(self, keys: Sequence[MediaKey]) -> list[MediaKey]:
        """Those of ``keys`` that no stored event names any more."""
        referenced: set[MediaKey] = set()
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            ids = sorted({media_id for _, media_id in chunk})
            rows = await self.db.fetchall(
                "SELECT DISTINCT media_origin, media_id FROM media_references"
                f" WHERE media_id IN ({placeholders(len(ids))})",
                *ids,
            )
            referenced.update((r[0], r[1]) for r in rows)
        return [key for key in keys if key not in referenced]

    async def unreferenced_hashes(self, hashes: Iterable[str]) -> list[str]:
        """Those of ``hashes`` that no media, cache or thumbnail row names (their files may
        go)."""
        wanted = sorted(set(hashes))
        named: set[str] = set()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = placeholders(len(chunk))
            for table in ("local_media", "remote_media_cache", "media_thumbnails"):
                rows = await self.db.fetchall(
                    f"SELECT DISTINCT sha256 FROM {table} WHERE sha256 IN ({marks})", *chunk
                )
                named.update(r[0] for r in rows)
        return [h for h in wanted if h not in named]
