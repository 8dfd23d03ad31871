"""Typing notifications: ``PUT /rooms/{roomId}/typing/{userId}`` and the ``m.typing`` EDU.

Who is typing lives in this process's memory only (as in Synapse): an entry lasts the timeout
its client asked for (capped at 120 s, as Synapse) or 60 s for a remote user (Synapse's
federation timeout; its server re-sends while the user types), and a timer removes it. Every
change of a room's typers takes the next position of the typing stream, kept in memory too; it
starts at the wall clock's milliseconds, so the positions of a restarted process are past the
ones its clients hold, and a position from the future (a clock set back) is answered as if the
client had none.

Only a user joined to the room may type in it, and only for themselves. A remote server may
only tell us about its own users who are joined to the room, and not when the room's server
ACL bans it.

With several processes (``redis.enabled``) every change is also sent to the others through the
Redis bus and applied to their copy (a replica, which sends no EDU and times out a little
after the original would, in case the "stopped" is lost), so a client sees the room's typers
whichever process it syncs with. Positions then follow the wall clock (one more when two
changes share a millisecond), so a token one process gave is understood by the others.

State is bounded: at most ``MAX_TYPERS_PER_ROOM`` typers a room, rooms whose last
change is older than ``FORGET_AFTER_S`` forgotten, and a token bucket per local user
(``rc_typing``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden
from homeserver.ratelimit import TokenBucketLimiter
from homeserver.storage import Store
from homeserver.streams.edus import TYPING_EDU, enqueue_room_edu
from homeserver.streams.notifier import Notifier
from homeserver.streams.redis_bus import RedisBus
from homeserver.types import domain_of, room_id_error, user_id_error

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 30_000
#: Synapse's cap on a client's typing timeout.
MAX_TIMEOUT_MS = 120_000
#: How long a remote user's typing lasts without a new EDU (Synapse's FEDERATION_TIMEOUT).
FEDERATION_TIMEOUT_S = 60.0
#: A local user still typing has the EDU sent again this often, before the remote end's
#: FEDERATION_TIMEOUT drops it (Synapse's FEDERATION_PING_INTERVAL).
FEDERATION_PING_INTERVAL_S = 40.0
#: A room without typers is forgotten this long after its last change (Synapse's
#: FORGET_TIMEOUT): a client that has not synced since then is not told the typing stopped.
FORGET_AFTER_S = 600.0
MAX_TYPERS_PER_ROOM = 100
#: A replica of another process's typer outlives the original's timeout by this much.
REPLICA_GRACE_S = 5.0
#: The bus message type.
TYPING_ITEM = "typing"

ActivityHook = Callable[[str], Awaitable[None]]


@dataclass(slots=True)
class _Typer:
    timer: asyncio.TimerHandle
    #: loop time the EDU for this user was last queued (local users only).
    sent_at: float = 0.0
    #: another process's typer, copied here (this process sends no EDU for it).
    replica: bool = False


@dataclass(slots=True)
class _Room:
    typers: dict[str, _Typer] = field(default_factory=dict)
    #: the typing stream position of the last change.
    position: int = 0
    #: loop time of the last change.
    changed_at: float = 0.0


class TypingService:
    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        clock: WallClock,
        server_name: str,
        *,
        limiter: TokenBucketLimiter | None = None,
        on_active: ActivityHook | None = None,
        shadow_banned: Callable[[str], bool] = lambda _user_id: False,
        replication: RedisBus | None = None,
    ) -> None:
        self.store = store
        #: a shadow-banned user's typing is accepted and dropped (rooms/shadow_ban.py).
        self._shadow_banned = shadow_banned
        self.notifier = notifier
        self.clock = clock
        self.server_name = server_name
        self.limiter = limiter
        #: called with a local user who typed (presence counts it as activity).
        self.on_active = on_active
        self._rooms: dict[str, _Room] = {}
        self._position = clock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.replication = replication
        if replication is not None:
            replication.subscribe(TYPING_ITEM, self._on_replica)

    @property
    def position(self) -> int:
        """The typing stream's current position."""
        return self._position

    # --- local users ----------------------------------------------------------------------
    async def set_typing(
        self, requester: str, room_id: str, user_id: str, body: dict[str, Any]
    ) -> None:
        """The body of ``PUT /typing``: ``{"typing": bool, "timeout": ms}``."""
        if user_id != requester:
            raise Forbidden("Cannot set another user's typing state")
        if room_id_error(room_id):
            raise BadRequest(f"{room_id} is not a valid room ID", Codes.INVALID_PARAM)
        typing = body.get("typing")
        if not isinstance(typing, bool):
            raise BadRequest("'typing' must be true or false", Codes.BAD_JSON)
        timeout = body.get("timeout", DEFAULT_TIMEOUT_MS)
        if typing and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0):
            raise BadRequest("'timeout' must be a non-negative integer", Codes.BAD_JSON)
        if not await self._is_joined(room_id, user_id):
            raise Forbidden(f"User {user_id} not in room {room_id}")
        if self.limiter is not None:
            await self.limiter.check(user_id)
        if self._shadow_banned(user_id):
            return
        if self.on_active is not None:
            await self.on_active(user_id)
        if typing:
            timeout_s = min(timeout, MAX_TIMEOUT_MS) / 1000
            await self._started(room_id, user_id, timeout_s)
            self._share(room_id, user_id, timeout_s)
        elif self._stop(room_id, user_id):
            self._share(room_id, user_id, None)
            await self._send_edu(room_id, user_id, False)

    async def _started(self, room_id: str, user_id: str, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        room = self._rooms.get(room_id)
        typer = None if room is None else room.typers.get(user_id)
        if typer is not None:
            # Still typing: a new deadline, and the EDU again only before the remote end
            # would time the user out.
            typer.replica = False  # typing here now, whichever process saw it first
            typer.timer.cancel()
            typer.timer = loop.call_later(timeout_s, self._timed_out, room_id, user_id)
            if loop.time() - typer.sent_at >= FEDERATION_PING_INTERVAL_S:
                typer.sent_at = loop.time()
                await self._send_edu(room_id, user_id, True)
            return
        if not self._add(room_id, user_id, timeout_s):
            return
        self._rooms[room_id].typers[user_id].sent_at = loop.time()
        await self._send_edu(room_id, user_id, True)

    def _timed_out(self, room_id: str, user_id: str) -> None:
        room = self._rooms.get(room_id)
        typer = None if room is None else room.typers.get(user_id)
        if typer is None or not self._stop(room_id, user_id, cancel=False):
            return
        if typer.replica:
            return  # the process it came from times it out and sends the EDU
        self._share(room_id, user_id, None)
        if domain_of(user_id) == self.server_name:
            task = asyncio.get_running_loop().create_task(self._send_edu(room_id, user_id, False))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_edu(self, room_id: str, user_id: str, typing: bool) -> None:
        content = {"room_id": room_id, "user_id": user_id, "typing": typing}
        try:
            await enqueue_room_edu(
                self.store,
                room_id,
                TYPING_EDU,
                content,
                our_server=self.server_name,
                now=self.clock(),
            )
        except Exception:
            # A lost typing notice is not worth failing the request for.
            logger.exception("could not queue the typing EDU of %s in %s", user_id, room_id)

    # --- remote users ---------------------------------------------------------------------
    async def on_edu(self, origin: str, content: dict[str, Any]) -> str | None:
        """An ``m.typing`` EDU from ``origin``; the reason it was dropped, or None."""
        room_id = content.get("room_id")
        user_id = content.get("user_id")
        typing = content.get("typing")
        if not isinstance(room_id, str) or room_id_error(room_id):
            return "room_id is not a room ID"
        if not isinstance(user_id, str) or user_id_error(user_id, historical=True):
            return "user_id is not a user ID"
        if domain_of(user_id) != origin:
            return f"{user_id} is not a user of {origin}"
        if not isinstance(typing, bool):
            return "typing is not a boolean"
        if not await self._is_joined(room_id, user_id):
            return f"{user_id} is not joined to {room_id}"
        if typing:
            room = self._rooms.get(room_id)
            typer = None if room is None else room.typers.get(user_id)
            if typer is not None:
                typer.replica = False
                typer.timer.cancel()
                typer.timer = asyncio.get_running_loop().call_later(
                    FEDERATION_TIMEOUT_S, self._timed_out, room_id, user_id
                )
            elif not self._add(room_id, user_id, FEDERATION_TIMEOUT_S):
                return f"too many typers in {room_id}"
            self._share(room_id, user_id, FEDERATION_TIMEOUT_S)
        elif self._stop(room_id, user_id):
            self._share(room_id, user_id, None)
        return None

    # --- other processes ------------------------------------------------------------------
    def _share(self, room_id: str, user_id: str, timeout_s: float | None) -> None:
        """Tell the other processes ``user_id`` types in ``room_id`` for ``timeout_s`` more
        seconds (None: stopped)."""
        if self.replication is not None:
            self.replication.publish({"t": TYPING_ITEM, "r": room_id, "u": user_id, "s": timeout_s})

    def _on_replica(self, item: dict[str, Any]) -> None:
        room_id, user_id, timeout_s = item.get("r"), item.get("u"), item.get("s")
        if not isinstance(room_id, str) or not isinstance(user_id, str):
            return
        if timeout_s is None:
            self._stop(room_id, user_id, publish=False)
            return
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
            return
        timeout_s = min(float(timeout_s), MAX_TIMEOUT_MS / 1000) + REPLICA_GRACE_S
        room = self._rooms.get(room_id)
        typer = None if room is None else room.typers.get(user_id)
        if typer is None:
            if self._add(room_id, user_id, timeout_s, publish=False):
                self._rooms[room_id].typers[user_id].replica = True
            return
        typer.replica = True
        typer.timer.cancel()
        typer.timer = asyncio.get_running_loop().call_later(
            timeout_s, self._timed_out, room_id, user_id
        )

    # --- /sync ----------------------------------------------------------------------------
    def changes(self, room_ids: Iterable[str], since: int | None) -> dict[str, list[str]]:
        """The typers of each room in ``room_ids`` whose typing changed after ``since``
        (None, or a position from the future: every room with typing state)."""
        fresh = since is None or since > self._position
        result: dict[str, list[str]] = {}
        for room_id in room_ids:
            room = self._rooms.get(room_id)
            if room is not None and (fresh or room.position > since):  # type: ignore[operator]
                result[room_id] = sorted(room.typers)
        return result

    def typers(self, room_id: str) -> list[str]:
        room = self._rooms.get(room_id)
        return [] if room is None else sorted(room.typers)

    # --- state ----------------------------------------------------------------------------
    def _add(self, room_id: str, user_id: str, timeout_s: float, *, publish: bool = True) -> bool:
        room = self._rooms.get(room_id)
        if room is None:
            self._forget_idle_rooms()
            room = self._rooms[room_id] = _Room()
        if len(room.typers) >= MAX_TYPERS_PER_ROOM:
            return False
        timer = asyncio.get_running_loop().call_later(timeout_s, self._timed_out, room_id, user_id)
        room.typers[user_id] = _Typer(timer)
        self._changed(room_id, room, publish=publish)
        return True

    def _stop(
        self, room_id: str, user_id: str, *, cancel: bool = True, publish: bool = True
    ) -> bool:
        room = self._rooms.get(room_id)
        typer = None if room is None else room.typers.pop(user_id, None)
        if room is None or typer is None:
            return False
        if cancel:
            typer.timer.cancel()
        self._changed(room_id, room, publish=publish)
        return True

    def _changed(self, room_id: str, room: _Room, *, publish: bool = True) -> None:
        """``publish``: a change made here (the others are told); else one copied from
        another process, which has told the others itself."""
        self._position += 1
        if self.replication is not None:
            # Wall-clock milliseconds (one more when two changes share one): the processes'
            # positions then compare, so a token from another process works here.
            self._position = max(self._position, self.clock())
        room.position = self._position
        room.changed_at = asyncio.get_running_loop().time()
        if publish:
            self.notifier.notify(room_ids=[room_id])
        else:
            self.notifier.notify_local(room_ids=[room_id])

    def _forget_idle_rooms(self) -> None:
        now = asyncio.get_running_loop().time()
        idle = [
            room_id
            for room_id, room in self._rooms.items()
            if not room.typers and now - room.changed_at > FORGET_AFTER_S
        ]
        for room_id in idle:
            del self._rooms[room_id]

    async def _is_joined(self, room_id: str, user_id: str) -> bool:
        member = await self.store.state.get_current_state_event(room_id, "m.room.member", user_id)
        return member is not None and member.membership == "join"

    async def stop(self) -> None:
        """Cancel the timers and wait for the EDUs being queued."""
        for room in self._rooms.values():
            for typer in room.typers.values():
                typer.timer.cancel()
        self._rooms.clear()
        await asyncio.gather(*self._tasks, return_exceptions=True)
