"""Recording where each session is used from (Synapse's ``client_ips``): the client's address
(``http/client_address.py``) and user agent per access token and device.

Authentication calls :meth:`ClientIpRecorder.record`, which only touches memory: a use is kept
when its (token, address, user agent) was not written in the last ``LAST_SEEN_GRANULARITY_MS``
(Synapse's two minutes), and what accumulated is written in one transaction every
``FLUSH_SECONDS`` by the loop :meth:`start` runs (and by :meth:`flush` before a read that shows
it). The same loop forgets rows older than ``user_ips_max_age`` once an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from homeserver.clock import WallClock
from homeserver.storage.client_ips import ClientIpEntry, ClientIpsStore

logger = logging.getLogger(__name__)

#: As Synapse: a session's last use is recorded at most once per two minutes per address.
LAST_SEEN_GRANULARITY_MS = 120_000
FLUSH_SECONDS = 5.0
SWEEP_EVERY_SECONDS = 3600.0
#: A user agent longer than this is cut (a client chooses it; the row must stay small).
MAX_USER_AGENT_LENGTH = 512
#: At most this many distinct uses wait in memory; beyond it, new ones wait for the next flush.
MAX_PENDING = 50_000

_Key = tuple[str, str, str]


def clean_user_agent(raw: str | None) -> str:
    if not raw:
        return ""
    return raw.replace("\x00", "")[:MAX_USER_AGENT_LENGTH]


class ClientIpRecorder:
    def __init__(self, store: ClientIpsStore, clock: WallClock, max_age_ms: int) -> None:
        self._store = store
        self._clock = clock
        self._max_age_ms = max_age_ms
        self._pending: dict[_Key, ClientIpEntry] = {}
        #: when each key was last queued (pruned at every flush).
        self._last_queued: dict[_Key, int] = {}
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def record(
        self, user_id: str, token_hash: str, device_id: str | None, ip: str, user_agent: str
    ) -> None:
        """A request authenticated with this token, from ``ip`` with ``user_agent``."""
        now = self._clock()
        key = (token_hash, ip, clean_user_agent(user_agent))
        last = self._last_queued.get(key)
        if last is not None and now - last < LAST_SEEN_GRANULARITY_MS:
            return
        if key not in self._pending and len(self._pending) >= MAX_PENDING:
            return
        self._last_queued[key] = now
        self._pending[key] = ClientIpEntry(user_id, token_hash, device_id, ip, key[2], now)

    async def flush(self) -> None:
        """Write what accumulated (one transaction)."""
        async with self._flush_lock:
            batch, self._pending = self._pending, {}
            if batch:
                try:
                    await self._store.record(list(batch.values()))
                except BaseException:
                    # Kept for the next flush; a use recorded meanwhile is the newer one.
                    self._pending = batch | self._pending
                    raise
            cutoff = self._clock() - LAST_SEEN_GRANULARITY_MS
            self._last_queued = {k: t for k, t in self._last_queued.items() if t >= cutoff}

    async def sweep(self) -> int:
        """Forget uses older than ``user_ips_max_age``; how many rows went."""
        return await self._store.sweep(self._clock() - self._max_age_ms)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
                if loop.time() >= next_sweep:
                    await self.sweep()
                    next_sweep = loop.time() + SWEEP_EVERY_SECONDS
            except Exception:
                logger.exception("writing client addresses")
