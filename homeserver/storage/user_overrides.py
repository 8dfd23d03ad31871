"""The per-user settings read on hot paths, held in memory: shadow bans and suspensions (every
event send asks) and rate-limit overrides (every limiter check asks).

Both tables are tiny (an admin sets each row by hand), so the whole of each is kept. A write
through the admin API reloads at once in the process that made it (:meth:`changed`), which also
tells its ``change_listeners`` (with Redis, the other processes, which reload at once); without
that message, other processes over the same database see it within ``REFRESH_SECONDS``
(``start()``, run by ``serve()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from homeserver.storage.admin_user_data import AdminUserDataStore, RateLimitOverride

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 10.0


class UserOverrides:
    def __init__(self, store: AdminUserDataStore) -> None:
        self._store = store
        self._shadow_banned: frozenset[str] = frozenset()
        self._suspended: frozenset[str] = frozenset()
        self._ratelimits: dict[str, RateLimitOverride] = {}
        self._task: asyncio.Task[None] | None = None
        self._soon: asyncio.Task[None] | None = None
        #: told after an admin change here (the Redis bus publishes it to the other processes).
        self.change_listeners: list[Callable[[], None]] = []

    def is_shadow_banned(self, user_id: str) -> bool:
        return user_id in self._shadow_banned

    def is_suspended(self, user_id: str) -> bool:
        return user_id in self._suspended

    def ratelimit(self, user_id: str) -> RateLimitOverride | None:
        return self._ratelimits.get(user_id)

    def ratelimit_pair(self, user_id: str) -> tuple[float, float] | None:
        """``(messages_per_second, burst_count)`` for the limiters (``ratelimit.py``)."""
        override = self._ratelimits.get(user_id)
        if override is None:
            return None
        return float(override.messages_per_second), float(override.burst_count)

    async def reload(self) -> None:
        self._shadow_banned = frozenset(await self._store.shadow_banned_users())
        self._suspended = frozenset(await self._store.suspended_users())
        self._ratelimits = await self._store.all_ratelimits()

    async def changed(self) -> None:
        """An admin changed a row here: reload, and tell the listeners."""
        await self.reload()
        for listener in self.change_listeners:
            listener()

    def reload_soon(self) -> None:
        """Another process changed a row: reload in the background (one reload at a time)."""
        if self._soon is None or self._soon.done():
            self._soon = asyncio.get_running_loop().create_task(self._reload_logged())

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except Exception:
            logger.exception("reloading shadow bans and rate-limit overrides")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self.reload()
            except Exception:
                logger.exception("reloading shadow bans and rate-limit overrides")
            await asyncio.sleep(REFRESH_SECONDS)
