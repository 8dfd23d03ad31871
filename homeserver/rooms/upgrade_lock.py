"""The upgrade lock (DESIGN.md §3.2, §3.3 step 2): the room row's ``active → upgrading``
compare-and-set, holding the requester and a lease.

A lease is identified by (holder, expiry): the same user locking again after their lease was
recovered gets a later expiry, so a stale upgrader can never release — or commit under — a lock
that is no longer its own. Releasing and recovering lock the room's row first and re-read it, so
two processes recovering one expired lease cannot undo a lock taken in between.

The row also names the process (``instance_name``) that took the lock. A stranded lock — its
upgrader's process died, so nothing of the upgrade committed — is made ``active`` again at any
process's start-up (:meth:`UpgradeLocks.recover_own`: its own previous run's locks, and those of
processes whose liveness lock is free, i.e. not running), and by whichever live process runs the
recovery sweep (:meth:`UpgradeLocks.recover_stranded`, a singleton job) once the lock's lease
has expired or its process is gone. A running process's upgrade is never taken over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from homeserver.clock import WallClock
from homeserver.rooms.lifecycle import Actor, RoomStatus, transition
from homeserver.storage import Store
from homeserver.storage.rooms import RoomRecord
from homeserver.storage.upgrades import LockRow, UpgradingRoom

logger = logging.getLogger(__name__)

#: How often a repeated request polls the row while the same user's upgrade runs.
POLL_SECONDS = 0.02

LEASE_EXPIRED = "lease expired"
RECOVERED_AT_STARTUP = "recovered at start-up"
PROCESS_GONE = "the upgrading process stopped"


@dataclass(frozen=True, slots=True)
class Lease:
    room_id: str
    holder: str
    expires_ts: int


def holds(row: LockRow | RoomRecord, lease: Lease) -> bool:
    """Whether ``row`` is still locked by ``lease``."""
    holder = row.holder if isinstance(row, LockRow) else row.upgrade_lock_holder
    expires = row.expires_ts if isinstance(row, LockRow) else row.upgrade_lock_expires_ts
    return (
        row.status == RoomStatus.UPGRADING
        and holder == lease.holder
        and expires == lease.expires_ts
    )


InstanceAlive = Callable[[str], Awaitable[bool]]


def _same_lock(room: UpgradingRoom) -> Callable[[LockRow], bool]:
    """Under the row lock: the room is still held by the lock that was judged stranded."""

    def same(row: LockRow) -> bool:
        return (
            row.status == RoomStatus.UPGRADING
            and row.holder == room.holder
            and row.instance == room.instance
            and row.expires_ts == room.expires_ts
        )

    return same


class UpgradeLocks:
    def __init__(
        self,
        store: Store,
        clock: WallClock,
        lock_timeout_seconds: float,
        instance_name: str | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.timeout_seconds = lock_timeout_seconds
        #: this process, recorded with each lock it takes.
        self.instance_name = instance_name

    def expired(self, room: RoomRecord) -> bool:
        expires = room.upgrade_lock_expires_ts
        return expires is None or expires < self.clock()

    async def acquire(self, room_id: str, user_id: str, new_version: str) -> Lease | None:
        """``active → upgrading`` for ``user_id``; None if the room was not ``active``."""
        transition(RoomStatus.ACTIVE, RoomStatus.UPGRADING, Actor.REQUESTER)
        now = self.clock()
        expires = now + int(self.timeout_seconds * 1000)
        taken = await self.store.rooms.transition(
            room_id,
            RoomStatus.ACTIVE,
            RoomStatus.UPGRADING,
            actor=Actor.REQUESTER,
            reason=f"upgrade to room version {new_version} requested by {user_id}",
            ts=now,
            upgrade_lock_holder=user_id,
            upgrade_lock_expires_ts=expires,
            upgrade_lock_instance=self.instance_name,
        )
        return Lease(room_id, user_id, expires) if taken else None

    async def release(self, lease: Lease, reason: str) -> bool:
        """``upgrading → active`` if ``lease`` still holds the room (a failed upgrade)."""
        return await self._back_to_active(lease.room_id, reason, lambda row: holds(row, lease))

    async def recover_if_expired(self, room_id: str) -> bool:
        """``upgrading → active`` if the room's lease has expired (its upgrader crashed)."""
        now = self.clock()

        def stale(row: LockRow) -> bool:
            return row.status == RoomStatus.UPGRADING and (
                row.expires_ts is None or row.expires_ts < now
            )

        return await self._back_to_active(room_id, LEASE_EXPIRED, stale)

    async def recover_own(self, instance_alive: InstanceAlive | None = None) -> list[str]:
        """At start-up: the rooms this process's previous run left ``upgrading``, those locked
        before locks named their process, and (given ``instance_alive``) those of any process
        that is not running, are ``active`` again. An upgrade's work is one transaction, so a
        room left ``upgrading`` by a dead process has nothing of its upgrade committed."""
        mine = self.instance_name
        recovered = []
        for room in await self.store.upgrades.get_upgrading_rooms():
            if room.instance not in (None, mine) and (
                instance_alive is None or await instance_alive(room.instance)
            ):
                continue
            if await self._back_to_active(room.room_id, RECOVERED_AT_STARTUP, _same_lock(room)):
                logger.warning("room %s was left upgrading; it is active again", room.room_id)
                recovered.append(room.room_id)
        return recovered

    async def recover_stranded(
        self, live_instances: Collection[str], instance_alive: InstanceAlive | None = None
    ) -> list[str]:
        """The sweep: rooms whose lock's lease expired, or whose upgrading process is no
        longer live (no recent heartbeat, or per ``instance_alive``), are ``active`` again
        (each re-checked under the room's row lock)."""
        now = self.clock()
        live = set(live_instances)
        recovered = []
        for room in await self.store.upgrades.get_upgrading_rooms():
            expired = room.expires_ts is None or room.expires_ts < now
            gone = room.instance is not None and (
                room.instance not in live
                or (instance_alive is not None and not await instance_alive(room.instance))
            )
            if not (expired or gone):
                continue
            reason = LEASE_EXPIRED if expired else PROCESS_GONE
            if await self._back_to_active(room.room_id, reason, _same_lock(room)):
                logger.warning(
                    "room %s was left upgrading (%s); active again", room.room_id, reason
                )
                recovered.append(room.room_id)
        return recovered

    async def _back_to_active(
        self, room_id: str, reason: str, condition: Callable[[LockRow], bool]
    ) -> bool:
        transition(RoomStatus.UPGRADING, RoomStatus.ACTIVE, Actor.SYSTEM)
        async with self.store.db.transaction("upgrade_unlock") as txn:
            await self.store.persister.lock_rooms_txn(txn, [room_id])
            row = await self.store.upgrades.get_lock_row_txn(txn, room_id)
            if row is None or not condition(row):
                return False
            return await self.store.rooms.transition_txn(
                txn,
                room_id,
                RoomStatus.UPGRADING,
                RoomStatus.ACTIVE,
                actor=Actor.SYSTEM,
                reason=reason,
                ts=self.clock(),
            )

    async def wait_for_outcome(self, room: RoomRecord) -> RoomRecord | None:
        """Poll the row while the lock seen in ``room`` is held and its lease runs; the row as
        it is afterwards (None if the room vanished)."""
        seen = (room.upgrade_lock_holder, room.upgrade_lock_expires_ts)
        deadline = time.monotonic() + self.timeout_seconds
        current: RoomRecord | None = room
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            current = await self.store.rooms.get_room(room.room_id)
            if current is None or current.status != RoomStatus.UPGRADING:
                return current
            if (current.upgrade_lock_holder, current.upgrade_lock_expires_ts) != seen:
                return current
            if self.expired(current):
                return current
        return current
