"""Server-side key backup (``/room_keys``): a user's backup versions and the encrypted room keys
in them.

The server never sees a key in the clear: ``session_data`` is encrypted by the client to the
backup's public key (in ``auth_data``). It keeps, per session, the better of the copies it is
sent (:func:`better_key`), and answers every change with the version's ``etag`` and key count so
clients can tell whether another device changed the backup. Only the current (newest) version
takes uploads; an older one answers ``M_WRONG_ROOM_KEYS_VERSION`` with the current version, so
a client that missed a reset notices it.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from homeserver.crypto.canonical_json import parse_json
from homeserver.e2e.key_backup_bodies import (
    VersionInfo,
    better_key,
    parse_keys_upload,
    parse_version,
    parse_version_info,
)
from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError, NotFound
from homeserver.storage import Store
from homeserver.storage.key_backup import BackedUpKey, BackupVersion, UploadStatus

#: Live versions per user: clients delete the old version when they make a new one.
MAX_VERSIONS_PER_USER = 32
#: Keys per version: years of busy encrypted chat stay well below it, and a full restore
#: (``GET /room_keys/keys``, answered in one body as Synapse does) stays in the hundreds of MB.
MAX_KEYS_PER_VERSION = 250_000


class KeyBackupService:
    def __init__(
        self,
        store: Store,
        *,
        max_versions: int = MAX_VERSIONS_PER_USER,
        max_keys: int = MAX_KEYS_PER_VERSION,
    ) -> None:
        self._store = store.key_backup
        self._max_versions = max_versions
        self._max_keys = max_keys

    # --- versions --------------------------------------------------------------------------
    async def create_version(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        info = parse_version_info(body)
        version = await self._store.create_version(
            user_id, info.algorithm, info.auth_data, max_versions=self._max_versions
        )
        if version is None:
            raise Forbidden(
                f"At most {self._max_versions} backup versions; delete an old one first"
            )
        return {"version": str(version)}

    async def get_version(self, user_id: str, version: str | None) -> dict[str, Any]:
        """``version`` None: the current version (404 ``M_NOT_FOUND`` when there is none)."""
        number = None if version is None else parse_version(version)
        found = None
        if version is None or number is not None:
            found = await self._store.get_version(user_id, number)
        if found is None:
            raise NotFound("No backup found" if version is None else "Unknown backup version")
        return _version_json(found)

    async def update_version(
        self, user_id: str, version: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Only ``auth_data`` changes; the body's ``version``, if any, must be the path's and
        its ``algorithm`` the version's."""
        in_body = body.get("version")
        if in_body is not None and in_body != version:
            raise BadRequest("Version in body does not match", Codes.INVALID_PARAM)
        info: VersionInfo = parse_version_info(body)
        number = parse_version(version)
        found = None if number is None else await self._store.get_version(user_id, number)
        if number is None or found is None:
            raise NotFound("Unknown backup version")
        if found.algorithm != info.algorithm:
            raise BadRequest("Algorithm does not match", Codes.INVALID_PARAM)
        if not await self._store.update_auth_data(user_id, number, info.auth_data):
            raise NotFound("Unknown backup version")
        return {}

    async def delete_version(self, user_id: str, version: str) -> dict[str, Any]:
        number = parse_version(version)
        if number is None or not await self._store.delete_version(user_id, number):
            raise NotFound("Unknown backup version")
        return {}

    # --- keys ------------------------------------------------------------------------------
    async def upload_keys(
        self,
        user_id: str,
        version: str,
        body: dict[str, Any],
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        keys = parse_keys_upload(body, room_id, session_id)
        number = parse_version(version)
        if number is None:
            raise NotFound("Unknown backup version")
        result = await self._store.upload_keys(
            user_id, number, keys, better_key, max_keys=self._max_keys
        )
        if result.status is UploadStatus.NOT_FOUND:
            raise NotFound("Unknown backup version")
        if result.status is UploadStatus.NOT_CURRENT:
            raise MatrixError(
                HTTPStatus.FORBIDDEN,
                Codes.WRONG_ROOM_KEYS_VERSION,
                "Wrong room_keys version",
                current_version=str(result.current_version),
            )
        if result.status is UploadStatus.TOO_MANY_KEYS:
            raise Forbidden(f"A backup version holds at most {self._max_keys} keys")
        return {"etag": str(result.etag), "count": result.count}

    async def get_keys(
        self,
        user_id: str,
        version: str,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """The whole backup (``rooms``), one room (``sessions``) or one session's key."""
        number = parse_version(version)
        rooms = (
            None
            if number is None
            else await self._store.get_keys(user_id, number, room_id, session_id)
        )
        if rooms is None:
            raise NotFound("Unknown backup version")
        if room_id is not None and session_id is not None:
            key = rooms.get(room_id, {}).get(session_id)
            if key is None:
                raise NotFound("No room_keys found")
            return _key_json(key)
        if room_id is not None:
            return _sessions_json(rooms.get(room_id, {}))
        return {"rooms": {rid: _sessions_json(sessions) for rid, sessions in rooms.items()}}

    async def delete_keys(
        self,
        user_id: str,
        version: str,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        number = parse_version(version)
        change = (
            None
            if number is None
            else await self._store.delete_keys(user_id, number, room_id, session_id)
        )
        if change is None:
            raise NotFound("Unknown backup version")
        return {"etag": str(change.etag), "count": change.count}


def _version_json(found: BackupVersion) -> dict[str, Any]:
    return {
        "version": str(found.version),
        "algorithm": found.algorithm,
        "auth_data": parse_json(found.auth_data),
        "etag": str(found.etag),
        "count": found.count,
    }


def _key_json(key: BackedUpKey) -> dict[str, Any]:
    return {
        "first_message_index": key.first_message_index,
        "forwarded_count": key.forwarded_count,
        "is_verified": key.is_verified,
        "session_data": parse_json(key.session_data),
    }


def _sessions_json(sessions: dict[str, BackedUpKey]) -> dict[str, Any]:
    return {"sessions": {sid: _key_json(key) for sid, key in sessions.items()}}
