"""Presence: ``GET/PUT /presence/{userId}/status``, /sync's ``set_presence``, the ``m.presence``
EDU both ways, and the timeouts that take idle and vanished users offline (Synapse's rules).

* A local user is online while a client syncs with ``set_presence`` online (the default) or
  after PUT; 30 s after their last sync ends with none running they are offline
  (``SYNC_ONLINE_TIMEOUT``), and online without activity for 5 minutes is unavailable
  (``IDLE_TIMER``). ``currently_active`` is "active in the last minute".
* A state is stored (with a new position on the presence stream, which /sync reads) and sent to
  the servers sharing a room with the user only when it changed in a way a client would show:
  the state, the status message, ``currently_active``, or the last activity moving by more than
  a minute (``LAST_ACTIVE_GRANULARITY``).
* Anyone may read their own presence and that of a user sharing a joined room with them
  (Synapse's ``is_visible``); /sync sends the same set of users.
* A remote server may only tell us about its own users, and only about those who share a room
  with one of ours; a remote user not heard of for 30 minutes is offline
  (``FEDERATION_TIMEOUT``).

In memory: which local users have a sync running, and when each one's last sync ended (a user
is dropped once offline), so the state is bounded by the users actually syncing. With several
processes (``redis.enabled``) each one tells the others, at every sweep, which users have a
sync running on it; they count that as a sync ending then, so no process's sweep takes a user
offline who syncs elsewhere. Updates are
limited per user by ``rc_presence`` (over it, PUT answers 429 and a sync leaves presence alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden
from homeserver.ratelimit import RateLimitExceeded, TokenBucketLimiter
from homeserver.storage import Store
from homeserver.storage.presence import OFFLINE, PresenceState
from homeserver.streams.edus import PRESENCE_EDU, enqueue_user_edu_txn
from homeserver.streams.notifier import Notifier
from homeserver.streams.redis_bus import RedisBus
from homeserver.types import domain_of, user_id_error

logger = logging.getLogger(__name__)

ONLINE = "online"
UNAVAILABLE = "unavailable"
STATES = (ONLINE, UNAVAILABLE, OFFLINE)

SYNC_ONLINE_TIMEOUT_MS = 30_000
IDLE_TIMER_MS = 5 * 60_000
LAST_ACTIVE_GRANULARITY_MS = 60_000
FEDERATION_TIMEOUT_MS = 30 * 60_000
#: How often the timeout sweep runs (Synapse checks every 5 s).
SWEEP_INTERVAL_S = 5.0
#: Users looked at per sweep (the rest wait for the next one).
SWEEP_BATCH = 5_000
#: A status message longer than this is refused (Synapse has no limit but its body size; a
#: status is a line of text shown beside a name).
MAX_STATUS_MSG_LENGTH = 1024
#: Presence updates read from one EDU (Synapse batches far fewer).
MAX_PUSHES_PER_EDU = 100
#: The bus message type: users with a sync running on the sending process.
SYNCING_ITEM = "syncing"


def presence_content(state: PresenceState, now_ms: int) -> dict[str, Any]:
    """The client and federation form of a state (without ``user_id``)."""
    content: dict[str, Any] = {"presence": state.state}
    if state.last_active_ts:
        content["last_active_ago"] = max(0, now_ms - state.last_active_ts)
    if state.status_msg:
        content["status_msg"] = state.status_msg
    if state.state == ONLINE:
        content["currently_active"] = state.currently_active
    return content


def should_notify(old: PresenceState, new: PresenceState) -> bool:
    """Whether a change is worth a new position, waking clients and telling servers."""
    if (old.state, old.status_msg, old.currently_active) != (
        new.state,
        new.status_msg,
        new.currently_active,
    ):
        return True
    return (
        new.state == ONLINE and new.last_active_ts - old.last_active_ts > LAST_ACTIVE_GRANULARITY_MS
    )


class PresenceService:
    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: WallClock,
        server_name: str,
        *,
        enabled: bool = True,
        limiter: TokenBucketLimiter | None = None,
        sync_limiter: TokenBucketLimiter | None = None,
        replication: RedisBus | None = None,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.server_name = server_name
        self.enabled = enabled
        self.limiter = limiter
        self.sync_limiter = sync_limiter
        #: local users with a /sync running now (how many).
        self._syncing: dict[str, int] = {}
        #: local users online or unavailable: when their last sync ended (or they set it).
        self._last_sync: dict[str, int] = {}
        self._started_ms = clock()
        self._sweeper: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.replication = replication
        if replication is not None:
            replication.subscribe(SYNCING_ITEM, self._on_syncing_elsewhere)

    def _is_mine(self, user_id: str) -> bool:
        return domain_of(user_id) == self.server_name

    # --- the client API -------------------------------------------------------------------
    async def get_presence(self, requester: str, user_id: str) -> dict[str, Any]:
        if user_id_error(user_id, historical=True):
            raise BadRequest(f"{user_id} is not a valid user ID", Codes.INVALID_PARAM)
        if not self.enabled:
            return {"presence": OFFLINE}
        if requester != user_id and user_id not in await self.store.presence.get_room_mates(
            requester
        ):
            raise Forbidden("You are not allowed to see their presence.")
        state = await self.store.presence.get(user_id) or PresenceState.offline(user_id)
        return presence_content(state, self.clock())

    async def set_presence(self, requester: str, user_id: str, body: dict[str, Any]) -> None:
        if requester != user_id:
            raise Forbidden("Can only set your own presence state")
        presence = body.get("presence")
        if not isinstance(presence, str) or presence not in STATES:
            raise BadRequest(f"'presence' must be one of {', '.join(STATES)}", Codes.BAD_JSON)
        status_msg = body.get("status_msg")
        if "status_msg" in body and not isinstance(status_msg, str):
            raise BadRequest("status_msg must be a string.", Codes.BAD_JSON)
        if status_msg is not None and "\x00" in status_msg:
            # Not storable in PostgreSQL text, and never meant.
            raise BadRequest("status_msg must not contain NUL", Codes.BAD_JSON)
        if status_msg is not None and len(status_msg) > MAX_STATUS_MSG_LENGTH:
            raise BadRequest(
                f"status_msg is longer than {MAX_STATUS_MSG_LENGTH} characters", Codes.TOO_LARGE
            )
        unknown = set(body) - {"presence", "status_msg"}
        if unknown:
            raise BadRequest(f"Unknown fields: {', '.join(sorted(unknown))}", Codes.BAD_JSON)
        if self.limiter is not None:
            await self.limiter.check(user_id)
        if not self.enabled:
            return
        now = self.clock()
        self._last_sync.setdefault(user_id, now)
        await self._update_local(user_id, presence, now, status_msg=status_msg, set_status=True)

    # --- /sync ----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def syncing(self, user_id: str, set_presence: str) -> AsyncIterator[None]:
        """Around one /sync: keeps the user online while it runs (unless ``set_presence`` is
        offline) and moves an offline user to ``set_presence`` (rate-limited)."""
        if not self.enabled or set_presence == OFFLINE:
            yield
            return
        affect = True
        if self.sync_limiter is not None:
            try:
                await self.sync_limiter.check(user_id)
            except RateLimitExceeded:
                affect = False
        self._syncing[user_id] = self._syncing.get(user_id, 0) + 1
        if self._syncing[user_id] == 1 and self.replication is not None:
            # At once, not at the next sweep: another process's sweep may come first.
            self.replication.publish({"t": SYNCING_ITEM, "u": [user_id]})
        try:
            if affect:
                now = self.clock()
                self._last_sync[user_id] = now
                await self._update_local(user_id, set_presence, now)
            yield
        finally:
            left = self._syncing[user_id] - 1
            if left:
                self._syncing[user_id] = left
            else:
                del self._syncing[user_id]
            self._last_sync[user_id] = self.clock()

    async def bump_active(self, user_id: str) -> None:
        """A local user did something (typed, sent): they are online and active now."""
        if not self.enabled:
            return
        now = self.clock()
        self._last_sync.setdefault(user_id, now)
        await self._update_local(user_id, ONLINE, now)

    async def _update_local(
        self,
        user_id: str,
        presence: str,
        now: int,
        *,
        status_msg: str | None = None,
        set_status: bool = False,
    ) -> None:
        async with self._lock:
            old = await self.store.presence.get(user_id) or PresenceState.offline(user_id)
            new = replace(
                old,
                state=presence,
                status_msg=status_msg if set_status else old.status_msg,
                last_active_ts=now if presence == ONLINE else old.last_active_ts,
            )
            new = replace(
                new,
                currently_active=new.state == ONLINE
                and now - new.last_active_ts < LAST_ACTIVE_GRANULARITY_MS,
            )
            if should_notify(old, new):
                await self._store_local([new], now)

    async def _store_local(self, states: list[PresenceState], now: int) -> None:
        """Store changed states of local users and tell the servers sharing a room."""
        async with self.store.db.transaction("set_local_presence") as txn:
            await self.store.presence.set_states_txn(txn, states)
            for state in states:
                content = {"user_id": state.user_id, **presence_content(state, now)}
                await enqueue_user_edu_txn(
                    txn,
                    self.store,
                    state.user_id,
                    PRESENCE_EDU,
                    {"push": [content]},
                    our_server=self.server_name,
                    now=now,
                )
        self.notifier.notify(user_ids=[s.user_id for s in states])

    # --- federation -----------------------------------------------------------------------
    async def on_edu(self, origin: str, content: dict[str, Any]) -> list[str]:
        """An ``m.presence`` EDU from ``origin``; the reasons updates in it were dropped."""
        if not self.enabled:
            return ["presence is disabled"]
        pushes = content.get("push")
        if not isinstance(pushes, list):
            return ["push is not a list"]
        dropped: list[str] = []
        now = self.clock()
        states: dict[str, PresenceState] = {}
        for push in pushes[:MAX_PUSHES_PER_EDU]:
            reason = await self._remote_state(origin, push, now, states)
            if reason is not None:
                dropped.append(reason)
        if states:
            await self.store.presence.set_states(list(states.values()))
            self.notifier.notify(user_ids=list(states))
        return dropped

    async def _remote_state(
        self, origin: str, push: Any, now: int, states: dict[str, PresenceState]
    ) -> str | None:
        if not isinstance(push, dict):
            return "a push is not an object"
        user_id = push.get("user_id")
        if not isinstance(user_id, str) or user_id_error(user_id, historical=True):
            return "user_id is not a user ID"
        if domain_of(user_id) != origin:
            return f"{user_id} is not a user of {origin}"
        presence = push.get("presence")
        if presence not in STATES:
            return f"{presence!r} is not a presence state"
        ago = push.get("last_active_ago")
        if ago is not None and (isinstance(ago, bool) or not isinstance(ago, int) or ago < 0):
            return "last_active_ago is not a non-negative integer"
        status_msg = push.get("status_msg")
        if not isinstance(status_msg, str) or "\x00" in status_msg:
            status_msg = None
        elif len(status_msg) > MAX_STATUS_MSG_LENGTH:
            status_msg = status_msg[:MAX_STATUS_MSG_LENGTH]
        mates = await self.store.presence.get_room_mates(user_id)
        if not any(self._is_mine(m) for m in mates if ":" in m):
            return f"no user of ours shares a room with {user_id}"
        states[user_id] = PresenceState(
            user_id=user_id,
            state=presence,
            status_msg=status_msg,
            last_active_ts=0 if ago is None else max(0, now - ago),
            last_federation_update_ts=now,
            currently_active=presence == ONLINE and push.get("currently_active") is True,
        )
        return None

    # --- timeouts -------------------------------------------------------------------------
    async def handle_timeouts(self) -> int:
        """One sweep: local users who stopped syncing go offline, idle ones unavailable and
        inactive ones not currently active; remote users not heard of go offline. Returns how
        many changed."""
        if not self.enabled:
            return 0
        now = self.clock()
        local: list[PresenceState] = []
        remote: list[PresenceState] = []
        async with self._lock:
            for state in await self.store.presence.get_not_offline(SWEEP_BATCH):
                if self._is_mine(state.user_id):
                    new = self._local_timeout(state, now)
                    if new is not None:
                        local.append(new)
                elif now - state.last_federation_update_ts > FEDERATION_TIMEOUT_MS:
                    remote.append(replace(state, state=OFFLINE, currently_active=False))
            if local:
                await self._store_local(local, now)
            if remote:
                await self.store.presence.set_states(remote)
                self.notifier.notify(user_ids=[s.user_id for s in remote])
        # Forget whoever stopped syncing a while ago (offline now, or set offline by PUT):
        # the map holds only users who sync.
        stale = [
            user_id
            for user_id, last in self._last_sync.items()
            if user_id not in self._syncing and now - last > 2 * SYNC_ONLINE_TIMEOUT_MS
        ]
        for user_id in stale:
            del self._last_sync[user_id]
        return len(local) + len(remote)

    def _local_timeout(self, state: PresenceState, now: int) -> PresenceState | None:
        user_id = state.user_id
        if user_id not in self._syncing:
            last_sync = self._last_sync.get(user_id, self._started_ms)
            if now - last_sync > SYNC_ONLINE_TIMEOUT_MS:
                return replace(state, state=OFFLINE, currently_active=False)
        if state.state == ONLINE and now - state.last_active_ts > IDLE_TIMER_MS:
            return replace(state, state=UNAVAILABLE, currently_active=False)
        if state.currently_active and now - state.last_active_ts > LAST_ACTIVE_GRANULARITY_MS:
            return replace(state, currently_active=False)
        return None

    def start(self) -> None:
        """Run the timeout sweep in the background until :meth:`stop`."""
        if self.enabled and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    def share_syncing(self) -> None:
        """Tell the other processes which users have a sync running here."""
        if self.replication is not None and self._syncing:
            self.replication.publish({"t": SYNCING_ITEM, "u": sorted(self._syncing)})

    def _on_syncing_elsewhere(self, item: dict[str, Any]) -> None:
        users = item.get("u")
        if not isinstance(users, list):
            return
        now = self.clock()
        for user_id in users:
            if isinstance(user_id, str) and self._is_mine(user_id):
                self._last_sync[user_id] = max(self._last_sync.get(user_id, 0), now)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.share_syncing()
            try:
                await self.handle_timeouts()
            except Exception:
                logger.exception("presence timeout sweep failed")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
