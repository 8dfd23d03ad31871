"""HTTP pushers: the durable ``push_outbox`` delivered to push gateways (Push Gateway API,
``POST {data.url}`` with ``{"notification": …}``), one task per pusher, like the federation
sender.

A job is deleted only once its gateway answered 2xx, so work survives a restart; the task of a
pusher sends its jobs one at a time, in order. A failure (no answer, a non-2xx status) puts the
pusher in backoff as Synapse's HTTP pusher does: 1 s, doubling, at most an hour, kept in the
pusher's row so a restart honours it; a job that still fails at the longest wait is given up
(logged, dropped) so one dead gateway cannot keep a queue for ever. Pushkeys the gateway lists
as ``rejected`` lose their pusher (spec: the homeserver must remove it).

Gateways are reached only at addresses the outbound IP policy allows (``ip_range_blacklist``
unless ``ip_range_whitelist``, as Synapse's pushers use them), judged on the very socket
address, so a DNS name resolving to a private address is refused too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType, SocketFactoryType

from homeserver.clock import WallClock
from homeserver.config.federation import FederationConfig
from homeserver.push.evaluator import tweaks
from homeserver.storage import Store
from homeserver.storage.pushers import Pusher, PushJob

logger = logging.getLogger(__name__)

#: Synapse's HTTP pusher backoff.
INITIAL_BACKOFF_MS = 1000
MAX_BACKOFF_MS = 60 * 60 * 1000
REQUEST_TIMEOUT_SECONDS = 30.0
#: The pusher data key naming the gateway, and the format that leaves the event out.
URL_KEY = "url"
EVENT_ID_ONLY = "event_id_only"


class GatewayError(Exception):
    """No usable answer from the gateway: try again later."""


def _policy_socket_factory(config: FederationConfig) -> SocketFactoryType:
    def create(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        host = str(sockaddr[0])
        try:
            allowed = config.is_ip_allowed(ipaddress.ip_address(host))
        except ValueError:
            allowed = False
        if not allowed:
            raise OSError(f"connecting to {host} is blocked by ip_range_blacklist")
        return socket.socket(family=family, type=type_, proto=proto)

    return create


@dataclass(slots=True)
class _Queue:
    task: asyncio.Task[None] | None = None
    woken: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class PushSender:
    def __init__(self, store: Store, ip_policy: FederationConfig, clock: WallClock) -> None:
        self.store = store
        self.ip_policy = ip_policy
        self.clock = clock
        self._queues: dict[int, _Queue] = {}
        self._running = False
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Resume every pusher with queued jobs and deliver from now on."""
        if self._running:
            return
        self._running = True
        self.wake(await self.store.pushers.pushers_with_jobs())

    async def stop(self) -> None:
        self._running = False
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def wake(self, pusher_ids: Iterable[int]) -> None:
        if not self._running:
            return
        for pusher_id in pusher_ids:
            queue = self._queues.get(pusher_id)
            if queue is None:
                queue = self._queues[pusher_id] = _Queue()
                queue.task = asyncio.create_task(
                    self._run(pusher_id, queue), name=f"pusher {pusher_id}"
                )
            else:
                queue.woken = True

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                socket_factory=_policy_socket_factory(self.ip_policy),
                use_dns_cache=False,
                limit_per_host=10,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
            )
        return self._session

    # --- one pusher ---------------------------------------------------------------------
    async def _run(self, pusher_id: int, queue: _Queue) -> None:
        try:
            while self._running:
                queue.woken = False
                pusher = await self.store.pushers.get_pusher(pusher_id)
                if pusher is None:
                    return  # deleted, and its jobs with it
                wait_ms = pusher.next_attempt_ts - self.clock() if pusher.retry_interval_ms else 0
                if wait_ms > 0:
                    await asyncio.sleep(wait_ms / 1000)
                    continue
                if not await self.send_next(pusher) and not queue.woken:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("pusher %d failed", pusher_id)
        finally:
            if self._queues.get(pusher_id) is queue:
                del self._queues[pusher_id]

    async def send_next(self, pusher: Pusher) -> bool:
        """Attempt the pusher's oldest job once; False when none is queued."""
        jobs = await self.store.pushers.head(pusher.id, 1)
        if not jobs:
            return False
        job = jobs[0]
        try:
            rejected = await self._post(pusher, job)
        except GatewayError as e:
            await self._failed(pusher, job, e)
            return True
        await self.store.pushers.delete_job(job.id)
        if pusher.retry_interval_ms or pusher.failing_since is not None:
            await self.store.pushers.set_backoff(pusher.id, None, 0, 0)
        if pusher.pushkey in rejected:
            logger.info("gateway rejected pushkey of pusher %d; removing it", pusher.id)
            await self.store.pushers.delete_pushers_by_pushkey(pusher.app_id, [pusher.pushkey])
            return False
        return True

    async def _failed(self, pusher: Pusher, job: PushJob, error: Exception) -> None:
        now = self.clock()
        if pusher.retry_interval_ms >= MAX_BACKOFF_MS:
            # As Synapse: past the longest wait the notification is given up, not the pusher.
            logger.warning(
                "giving up on notification %s for pusher %d: %s", job.event_id, pusher.id, error
            )
            await self.store.pushers.delete_job(job.id)
            await self.store.pushers.set_backoff(pusher.id, None, 0, 0)
            return
        interval = min(max(pusher.retry_interval_ms * 2, INITIAL_BACKOFF_MS), MAX_BACKOFF_MS)
        since = pusher.failing_since if pusher.failing_since is not None else now
        await self.store.pushers.set_backoff(pusher.id, since, now, interval)
        logger.info(
            "push gateway for pusher %d failed (%s); retry in %d ms", pusher.id, error, interval
        )

    async def _post(self, pusher: Pusher, job: PushJob) -> list[str]:
        url = pusher.data.get(URL_KEY)
        if not isinstance(url, str):
            return []  # cannot happen for a pusher set through the API; nothing to send to
        answer = await self.post_json(url, await self.notification_body(pusher, job))
        rejected = answer.get("rejected") if isinstance(answer, dict) else None
        return [r for r in rejected if isinstance(r, str)] if isinstance(rejected, list) else []

    async def post_json(self, url: str, body: dict[str, Any]) -> Any:
        """POST ``body`` to a gateway through the IP policy; its JSON answer ({} if none).
        Raises :class:`GatewayError` for anything but a 2xx answer."""
        try:
            async with self._http().post(url, json=body) as response:
                if not 200 <= response.status < 300:
                    raise GatewayError(f"HTTP {response.status}")
                try:
                    return await response.json(content_type=None)
                except ValueError:
                    return {}
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            raise GatewayError(str(e) or type(e).__name__) from e

    async def notification_body(self, pusher: Pusher, job: PushJob) -> dict[str, Any]:
        """The Push Gateway API body for one job (``event_id_only``: no event details)."""
        found = tweaks(job.actions)
        device: dict[str, Any] = {
            "app_id": pusher.app_id,
            "pushkey": pusher.pushkey,
            "pushkey_ts": pusher.pushkey_ts // 1000,
            "data": {k: v for k, v in pusher.data.items() if k != URL_KEY},
            "tweaks": found,
        }
        unread = await self.store.push_actions.count_rooms_with_unread(job.user_id)
        event = await self.store.events.get_event(job.event_id)
        high = bool(found.get("highlight") or found.get("sound")) or (
            event is not None and event.type == "m.room.encrypted"
        )
        notification: dict[str, Any] = {
            "event_id": job.event_id,
            "room_id": job.room_id,
            "counts": {"unread": unread},
            "prio": "high" if high else "low",
            "devices": [device],
        }
        if pusher.data.get("format") == EVENT_ID_ONLY or event is None:
            return {"notification": notification}
        notification["type"] = event.type
        notification["sender"] = event.sender
        notification["content"] = event.content
        if event.type == "m.room.member" and event.state_key is not None:
            notification["user_is_target"] = event.state_key == job.user_id
            notification["membership"] = event.content.get("membership")
        state = self.store.state
        member = await state.get_current_state_event(job.room_id, "m.room.member", event.sender)
        name = None if member is None else member.content.get("displayname")
        if isinstance(name, str):
            notification["sender_display_name"] = name
        room_name = await state.get_current_state_event(job.room_id, "m.room.name")
        if room_name is not None and isinstance(room_name.content.get("name"), str):
            notification["room_name"] = room_name.content["name"]
        alias = await state.get_current_state_event(job.room_id, "m.room.canonical_alias")
        if alias is not None and isinstance(alias.content.get("alias"), str):
            notification["room_alias"] = alias.content["alias"]
        return {"notification": notification}
