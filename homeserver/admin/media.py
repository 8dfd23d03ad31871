"""The admin API's media tools beyond quarantine (Synapse's ``rest/admin/media.py`` and
``statistics.py``): users' media usage, a user's media (list, delete all, quarantine all),
deleting local media by age and size, and protecting media from quarantine.

Every deletion goes through ``MediaRepository.delete_local`` (rows and files together, under
the files lock), as a single media's deletion does.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.media.repository import MediaRepository
from homeserver.storage import Store
from homeserver.types import domain_of, user_id_error


def _paged(body: dict[str, Any], start: int, limit: int, count: int, total: int) -> None:
    body["total"] = total
    if start + limit < total:
        body["next_token"] = start + count


class AdminMedia:
    def __init__(self, store: Store, media: MediaRepository, server_name: str) -> None:
        self.store = store
        self.media = media
        self.server_name = server_name

    async def usage_statistics(
        self,
        *,
        start: int,
        limit: int,
        order_by: str,
        backwards: bool,
        from_ts: int | None,
        until_ts: int | None,
        search_term: str | None,
    ) -> dict[str, Any]:
        users, total = await self.store.admin_media.usage_by_user(
            start=start,
            limit=limit,
            order_by=order_by,
            backwards=backwards,
            from_ts=from_ts,
            until_ts=until_ts,
            search_term=search_term,
        )
        body: dict[str, Any] = {
            "users": [
                {
                    "user_id": u.user_id,
                    "displayname": u.displayname,
                    "media_count": u.media_count,
                    "media_length": u.media_length,
                }
                for u in users
            ]
        }
        _paged(body, start, limit, len(users), total)
        return body

    async def _local_user(self, user_id: str) -> None:
        if user_id_error(user_id, historical=True):
            raise BadRequest(f"{user_id} is not a valid user ID", Codes.INVALID_PARAM)
        if domain_of(user_id) != self.server_name:
            raise BadRequest("Can only look up local users", Codes.UNKNOWN)
        if await self.store.users.get_user(user_id) is None:
            raise NotFound("Unknown user")

    async def media_of_user(
        self, user_id: str, *, start: int, limit: int, order_by: str, backwards: bool
    ) -> dict[str, Any]:
        await self._local_user(user_id)
        media, total = await self.store.admin_media.media_of_user(
            user_id, start=start, limit=limit, order_by=order_by, backwards=backwards
        )
        body: dict[str, Any] = {"media": media}
        _paged(body, start, limit, len(media), total)
        return body

    async def delete_media_of_user(self, user_id: str) -> dict[str, Any]:
        await self._local_user(user_id)
        deleted = [
            media_id
            for media_id in await self.store.admin_media.media_ids_of_user(user_id)
            if await self.media.delete_local(media_id)
        ]
        return {"deleted_media": deleted, "total": len(deleted)}

    async def quarantine_media_of_user(self, user_id: str, admin: str) -> dict[str, Any]:
        await self._local_user(user_id)
        count = 0
        for media_id in await self.store.admin_media.media_ids_of_user(user_id):
            if await self.store.media.set_quarantine(self.server_name, media_id, True, admin):
                count += 1
        return {"num_quarantined": count}

    async def delete_old_media(
        self, *, before_ts: int, size_gt: int, keep_profiles: bool
    ) -> dict[str, Any]:
        candidates = await self.store.admin_media.sweep_candidates(before_ts, size_gt)
        if keep_profiles and candidates:
            avatars = await self.store.admin_media.avatar_urls()
            prefix = f"mxc://{self.server_name}/"
            candidates = [m for m in candidates if prefix + m not in avatars]
        deleted = [m for m in candidates if await self.media.delete_local(m)]
        return {"deleted_media": deleted, "total": len(deleted)}

    async def set_protected(self, media_id: str, protected: bool) -> None:
        if not await self.store.admin_media.set_protected(media_id, protected):
            raise NotFound("Unknown media")
