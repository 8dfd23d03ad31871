"""Answering key queries about remote users from their cached device lists.

A remote user's device list (``store.remote_device_lists``, kept by the
``m.device_list_update`` EDUs their server sends, see e2e_edus.py) is complete exactly while
it is tracked, not stale, and one of our users shares a room with them: only then does their
server keep telling us every change. The joins that start such sharing mark the list stale in
the transaction that stores them (storage/device_list_invalidation.py), so a list that was left
behind while nobody here shared a room with the user is never served.

For each remote user asked for:

* shared, tracked and fresh → answered from the cache (named devices only, when some are named);
* shared, asked whole, and untracked or stale → the whole list is fetched (``GET user/devices``),
  stored, and answered from — the next queries need no request (Synapse does the same);
* anyone else (nobody here shares a room with them, or only some devices of an untracked user
  are wanted) → left to the server's ``user/keys/query``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.federation.client import FederationError, FederationHttpError
from homeserver.storage import Store
from homeserver.storage.device_list_invalidation import users_sharing_a_room_with_local_users
from homeserver.storage.remote_device_lists import RemoteDeviceList

logger = logging.getLogger(__name__)

#: How many users' lists one query fetches at a time.
RESYNC_CONCURRENCY = 8

#: ``(user_id, timeout_s)`` → the list as fetched and stored; None when an update arrived
#: meanwhile (the answer may be older than it); FederationError when the server failed.
Resync = Callable[[str, float], Awaitable[RemoteDeviceList | None]]


@dataclass(slots=True)
class CachedAnswer:
    """The part of a query answered here, and what is left for the remote server."""

    #: ``{device_keys, master_keys, self_signing_keys}`` of the users answered here.
    answer: dict[str, Any]
    #: user → devices (empty = all) still to ask with ``user/keys/query``.
    remaining: dict[str, list[str]]
    #: a fetch failed because the server is unreachable: asking it again now is pointless.
    unreachable: FederationError | None = field(default=None)


def cached_device_keys(
    cached: RemoteDeviceList, wanted: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """device → device keys (with the display name in ``unsigned``, as a server answers them)
    of the cached devices that have keys, only those in ``wanted`` if any are named."""
    keys_by_device: dict[str, dict[str, Any]] = {}
    for device_id, entry in cached.devices.items():
        keys = entry.get("keys")
        if not isinstance(keys, dict) or (wanted and device_id not in wanted):
            continue
        name = entry.get("device_display_name")
        if isinstance(name, str):
            unsigned = keys.get("unsigned")
            keys = {
                **keys,
                "unsigned": {
                    **(unsigned if isinstance(unsigned, dict) else {}),
                    "device_display_name": name,
                },
            }
        keys_by_device[device_id] = keys
    return keys_by_device


class RemoteDeviceListCache:
    """The cached side of ``RemoteKeys.query`` (``hs.remote_keys.device_lists``)."""

    def __init__(self, *, store: Store, resync: Resync) -> None:
        self.store = store
        self.resync = resync

    async def answer(self, asked: Mapping[str, list[str]], timeout_s: float) -> CachedAnswer:
        """Answer what the cache can of ``asked`` (one server's users → devices)."""
        result: dict[str, Any] = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        remaining = {u: list(d) for u, d in asked.items()}
        sharing = await users_sharing_a_room_with_local_users(self.store.db, asked)
        if not sharing:
            return CachedAnswer(result, remaining)
        held: dict[str, RemoteDeviceList] = {}
        to_fetch: list[str] = []
        for user_id in sorted(sharing):
            cached = await self.store.remote_device_lists.get(user_id)
            if cached is not None and not cached.stale:
                held[user_id] = cached
            elif not asked[user_id]:
                to_fetch.append(user_id)
        unreachable: FederationError | None = None
        if to_fetch:
            fetched, unreachable = await self._fetch(to_fetch, timeout_s)
            held.update(fetched)
        if not held:
            return CachedAnswer(result, remaining, unreachable)
        cross_signing = await self.store.e2e_keys.get_cross_signing_keys(list(held))
        for user_id, cached in held.items():
            result["device_keys"][user_id] = cached_device_keys(cached, asked[user_id])
            for key_type in ("master", "self_signing"):
                key = cross_signing.get(user_id, {}).get(key_type)
                if key is not None:
                    result[f"{key_type}_keys"][user_id] = key
            del remaining[user_id]
        return CachedAnswer(result, remaining, unreachable)

    async def _fetch(
        self, user_ids: list[str], timeout_s: float
    ) -> tuple[dict[str, RemoteDeviceList], FederationError | None]:
        """Fetch and store these users' whole lists; those that could not be fetched are left
        out (and the error, if the server could not be reached, returned)."""
        limit = asyncio.Semaphore(RESYNC_CONCURRENCY)

        async def one(user_id: str) -> RemoteDeviceList | None:
            async with limit:
                return await self.resync(user_id, timeout_s)

        outcomes = await asyncio.gather(*(one(u) for u in user_ids), return_exceptions=True)
        fetched: dict[str, RemoteDeviceList] = {}
        unreachable: FederationError | None = None
        for user_id, outcome in zip(user_ids, outcomes, strict=True):
            if isinstance(outcome, RemoteDeviceList):
                fetched[user_id] = outcome
            elif isinstance(outcome, FederationHttpError):
                # The server answered but would not list the devices: its user/keys/query may.
                logger.info("device list of %s not fetched: %s", user_id, outcome)
            elif isinstance(outcome, FederationError):
                logger.info("device list of %s not fetched: %s", user_id, outcome)
                unreachable = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        return fetched, unreachable
