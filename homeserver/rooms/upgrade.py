"""Room upgrade (DESIGN.md §3.3) as named steps, each callable alone:

1. check — :meth:`RoomUpgradeService.check`: room known (404), requester joined and allowed to
   send ``m.room.tombstone`` (403), then :func:`parse_upgrade_body`: ``new_version`` present and
   supported, ``additional_creators`` valid (v12 targets);
2. lock — the room row's ``active → upgrading`` compare-and-set (``upgrade_lock.py``). One
   request of this process starts the upgrade of a room and only it spends a room-creation
   token; concurrent requests for that room (any user allowed to upgrade it) await its outcome
   and answer the same replacement — or the same error. A room locked by another process is
   waited on too. A tombstoned room answers its upgrader, and a request that waited for the
   upgrade to the version it asked for, with the replacement (the ``room_upgrades`` record),
   anyone else with 400 ``M_BAD_STATE`` naming it;
3. plan — from a snapshot of the old room's state (``upgrade_plan.py``, pure);
4. build — every event in memory (``upgrade_build.py``, pure);
5. commit — ONE transaction: both rooms locked, the snapshot's state group verified (a state
   conflict re-plans, up to ``room_upgrades.max_state_conflict_retries`` times, the upgrade lock
   held throughout), the new room and its events, the old room's tombstone and restrictions,
   aliases, directory, per-user data, outbox rows, the upgrade record and ``upgrading →
   tombstoned``;
6. after commit — wake /sync, publish ``room.upgraded``.

Every failed request publishes ``room.upgrade.failed {room_id, reason}``; after the lock was
taken, the room goes back to ``active`` and the answer is 500 "Room upgrade could not be
completed".
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from homeserver.auth.power_levels import required_power_level, user_power_level
from homeserver.clock import WallClock
from homeserver.config import HomeserverConfig
from homeserver.errors import (
    BadRequest,
    Codes,
    Forbidden,
    MatrixError,
    NotFound,
    UpgradeInProgress,
)
from homeserver.events.builder import Signer
from homeserver.events.event import Event
from homeserver.events.ids import new_room_id
from homeserver.events.state_keys import (
    CANONICAL_ALIAS,
    CREATE,
    CREATE_KEY,
    MEMBER,
    POWER_LEVELS,
    POWER_LEVELS_KEY,
)
from homeserver.faults import fault_point
from homeserver.ratelimit import TokenBucketLimiter
from homeserver.room_versions import RoomVersion, get_room_version
from homeserver.rooms.bus import ROOM_UPGRADE_FAILED, ROOM_UPGRADED, DomainEventBus
from homeserver.rooms.creation import RoomIdCollision, room_exists_txn
from homeserver.rooms.lifecycle import Actor, RoomStatus, transition
from homeserver.rooms.upgrade_build import BuiltUpgrade, build_upgrade
from homeserver.rooms.upgrade_lock import InstanceAlive, Lease, UpgradeLocks, holds
from homeserver.rooms.upgrade_plan import (
    COPIED_STATE_TYPES,
    SPACE_CHILD,
    SPACE_PARENT,
    OldRoomSnapshot,
    UpgradePlan,
    UpgradePolicy,
    plan_upgrade,
)
from homeserver.rooms.upgrade_request import (
    UpgradeRefused,
    UpgradeRequest,
    parse_upgrade_body,
    upgrade_failed,
)
from homeserver.rooms.upgrade_spaces import SpaceLinks
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.errors import DatabaseUnavailable
from homeserver.storage.rooms import NewRoom, RoomRecord
from homeserver.storage.upgrades import UpgradeRecord
from homeserver.streams.fanout import enqueue_events_txn, enqueue_remote_invites_txn
from homeserver.streams.notifier import Notifier
from homeserver.types import room_id_error

logger = logging.getLogger(__name__)

#: How often one request goes round lock → wait → lock before giving up (another user's
#: upgrade keeps failing and restarting under it).
MAX_LOCK_ROUNDS = 5
#: The state types a snapshot reads (besides memberships).
SNAPSHOT_TYPES = frozenset(
    {CREATE, POWER_LEVELS, CANONICAL_ALIAS, SPACE_CHILD, SPACE_PARENT, MEMBER}
    | set(COPIED_STATE_TYPES)
)


class StateConflict(Exception):
    """The old room's state changed between plan and commit."""


class LockLost(Exception):
    """Our lease no longer holds the room (it expired and was recovered)."""


@dataclass(frozen=True, slots=True)
class RoomPower:
    """Who may do what in a room now: its create event and power levels under its version."""

    version: RoomVersion
    create: Event | None
    power_levels: Event | None

    def of(self, user_id: str) -> int:
        return user_power_level(self.version, user_id, self.create, self.power_levels)

    def may_tombstone(self, user_id: str) -> bool:
        needed = required_power_level(self.version, "m.room.tombstone", True, self.power_levels)
        return self.of(user_id) >= needed


@dataclass(frozen=True, slots=True)
class PreviewedUpgrade:
    """What an upgrade would do now: its snapshot, plan and built events, none of it kept."""

    snapshot: OldRoomSnapshot
    plan: UpgradePlan
    built: BuiltUpgrade


def _replaced(room: RoomRecord) -> UpgradeRefused:
    """The answer for a tombstoned room, naming its replacement when we know it."""
    replacement = room.replacement_room_id
    message = "This room has already been replaced"
    extra: dict[str, Any] = {}
    if replacement is not None:
        message += f" by {replacement}"
        extra["replacement_room"] = replacement
    return UpgradeRefused("already_tombstoned", BadRequest(message, Codes.BAD_STATE, **extra))


def _in_progress() -> UpgradeRefused:
    return UpgradeRefused("in_progress", UpgradeInProgress())


@dataclass(frozen=True, slots=True)
class _Flight:
    """The upgrade of one room this process is running: the version it upgrades to and its
    outcome (the replacement room, or None when the lock was taken elsewhere)."""

    new_version: str
    outcome: asyncio.Future[str | None]


def _retrieve(future: asyncio.Future[str | None]) -> None:
    if not future.cancelled():
        future.exception()


def _drop(_garbage: object) -> None:
    """A loop callback that only holds its argument until it has run."""


class RoomUpgradeService:
    def __init__(
        self,
        *,
        config: HomeserverConfig,
        store: Store,
        signer: Signer,
        ratelimiter: TokenBucketLimiter,
        notifier: Notifier,
        bus: DomainEventBus,
        clock: WallClock,
        space_links: SpaceLinks,
    ) -> None:
        self.settings = config.room_upgrades
        self.space_links = space_links
        self.server_name = config.server_name
        self.store = store
        self.signer = signer
        self.ratelimiter = ratelimiter
        self.notifier = notifier
        self.bus = bus
        self.clock = clock
        self.locks = UpgradeLocks(
            store, clock, self.settings.lock_timeout_seconds, config.instance.instance_name
        )
        self.policy = UpgradePolicy(
            server_name=config.server_name,
            auto_join_local_members=self.settings.auto_join_local_members,
            invite_remote_members=self.settings.invite_remote_members,
        )
        #: The upgrades running in this process, by old room ID.
        self._flights: dict[str, _Flight] = {}
        #: Called between build and commit of every attempt (tests inject state conflicts).
        self.before_commit: Callable[[str], Awaitable[None]] | None = None

    async def recover_stranded_upgrades(
        self, instance_alive: InstanceAlive | None = None
    ) -> list[str]:
        """Start-up: rooms this process's previous run left ``upgrading`` (and, given
        ``instance_alive``, any process that is not running) are ``active`` again; other
        processes' running upgrades are left alone."""
        return await self.locks.recover_own(instance_alive)

    async def recover_abandoned_upgrades(
        self, live_instances: Collection[str], instance_alive: InstanceAlive | None = None
    ) -> list[str]:
        """The periodic sweep (one process at a time): locks whose lease expired or whose
        process is gone."""
        return await self.locks.recover_stranded(live_instances, instance_alive)

    async def upgrade_room(self, user_id: str, room_id: str, body: Mapping[str, Any]) -> str:
        """``POST /rooms/{roomId}/upgrade``: the replacement room's ID."""
        try:
            return await self._upgrade(user_id, room_id, body)
        except UpgradeRefused as refused:
            await self.bus.publish(ROOM_UPGRADE_FAILED, room_id=room_id, reason=refused.reason)
            raise refused.error from None
        except MatrixError as e:
            reason = "rate_limited" if e.errcode == Codes.LIMIT_EXCEEDED else "internal"
            await self.bus.publish(ROOM_UPGRADE_FAILED, room_id=room_id, reason=reason)
            raise
        except Exception:
            logger.exception("room upgrade of %s failed before it started", room_id)
            await self.bus.publish(ROOM_UPGRADE_FAILED, room_id=room_id, reason="internal")
            raise upgrade_failed() from None

    async def check(self, user_id: str, room_id: str) -> RoomRecord:
        """The room exists and ``user_id`` is joined and may send ``m.room.tombstone``."""
        reason = room_id_error(room_id)
        if reason:
            raise UpgradeRefused("invalid_request", BadRequest(reason, Codes.INVALID_PARAM))
        room = await self.store.rooms.get_room(room_id)
        if room is None:
            raise UpgradeRefused("not_found", NotFound(f"Unknown room id {room_id}"))
        member = await self.store.state.get_current_state_event(room_id, "m.room.member", user_id)
        if member is None or member.membership != "join":
            raise UpgradeRefused("forbidden", Forbidden(f"User {user_id} not in room {room_id}"))
        if not (await self.room_power(room)).may_tombstone(user_id):
            raise UpgradeRefused(
                "forbidden",
                Forbidden("You don't have permission to upgrade this room"),
            )
        return room

    async def room_power(self, room: RoomRecord) -> RoomPower:
        """The room's current create event and power levels, to weigh its users."""
        state = self.store.state
        return RoomPower(
            get_room_version(room.room_version),
            await state.get_current_state_event(room.room_id, *CREATE_KEY),
            await state.get_current_state_event(room.room_id, *POWER_LEVELS_KEY),
        )

    async def preview(
        self, user_id: str, room_id: str, body: Mapping[str, Any]
    ) -> PreviewedUpgrade:
        """What ``upgrade_room(user_id, room_id, body)`` would do now, refused as it would
        refuse (its MatrixError) — without the lock, the rate limit, a commit or an event
        published. A plan the builder cannot build raises UpgradeBuildError."""
        try:
            room = await self.check(user_id, room_id)
            request = parse_upgrade_body(body)
            # A room that is not active: what the upgrade would answer (an expired lock does not
            # count: the upgrade would recover it and go on; a held one it would wait on, which a
            # preview cannot: "in progress").
            if room.status == RoomStatus.TOMBSTONED:
                raise _replaced(room)
            if room.status == RoomStatus.UPGRADING and not self.locks.expired(room):
                raise _in_progress()
        except UpgradeRefused as refused:
            raise refused.error from None
        snapshot = await self.snapshot(room_id)
        plan = self._plan(snapshot, user_id, request)
        return PreviewedUpgrade(snapshot, plan, self._build(plan, snapshot))

    async def _upgrade(self, user_id: str, room_id: str, body: Mapping[str, Any]) -> str:
        found: RoomRecord | None = await self.check(user_id, room_id)
        request = parse_upgrade_body(body)
        version = request.new_version.identifier
        waited = False
        for _round in range(MAX_LOCK_ROUNDS):
            room = found or await self.store.rooms.get_room(room_id)
            found = None  # later rounds read the row afresh
            if room is None:
                raise UpgradeRefused("not_found", NotFound(f"Unknown room id {room_id}"))
            # No await between reading the flights and registering one: a request either joins
            # the upgrade running in this process or starts it.
            flight = self._flights.get(room_id)
            if flight is not None:
                waited = True
                outcome = await asyncio.shield(flight.outcome)
                if outcome is not None and flight.new_version == version:
                    return outcome  # the same answer as the request that ran it
                continue  # it gave up (or upgraded to another version): look again
            if room.status == RoomStatus.TOMBSTONED:
                return await self._already_upgraded(user_id, room, version, waited=waited)
            if room.status == RoomStatus.UPGRADING:
                if self.locks.expired(room):
                    await self.locks.recover_if_expired(room_id)
                else:  # another process's upgrade: its outcome decides ours
                    waited = True
                    await self.locks.wait_for_outcome(room)
                continue
            outcome = await self._start(user_id, room_id, request)
            if outcome is not None:
                return outcome
        raise _in_progress()

    async def _start(self, user_id: str, room_id: str, request: UpgradeRequest) -> str | None:
        """Lock and upgrade the room as the one request of this process that does; concurrent
        requests for the room await its outcome (the replacement, the same error, or None:
        the lock was taken elsewhere, look again). Only this request spends a room-creation
        token."""
        await self.ratelimiter.check(user_id)
        flight = _Flight(request.new_version.identifier, asyncio.get_running_loop().create_future())
        # Joiners re-raise the error themselves; nobody awaiting it is not an unretrieved error.
        flight.outcome.add_done_callback(_retrieve)
        self._flights[room_id] = flight
        try:
            lease = await self.locks.acquire(room_id, user_id, flight.new_version)
            outcome = None if lease is None else await self._run_locked(lease, request)
        except asyncio.CancelledError:
            flight.outcome.set_result(None)  # abandoned: the joiners try themselves
            raise
        except BaseException as e:
            flight.outcome.set_exception(e)
            raise
        else:
            flight.outcome.set_result(outcome)
            return outcome
        finally:
            if self._flights.get(room_id) is flight:
                del self._flights[room_id]

    async def _already_upgraded(
        self, user_id: str, room: RoomRecord, version: str, *, waited: bool
    ) -> str:
        """A tombstoned room: its upgrader gets the replacement again, for ever; a request that
        waited for the upgrade to the version it asked for gets the same answer; anyone else
        400 ``M_BAD_STATE`` naming the replacement."""
        record = await self.store.upgrades.get_upgrade(room.room_id)
        if record is not None and (
            record.upgrader == user_id or (waited and record.new_version == version)
        ):
            return record.new_room_id
        raise _replaced(room)

    # --- steps 3-6 under the lock -------------------------------------------------------------
    async def _run_locked(self, lease: Lease, request: UpgradeRequest) -> str:
        fault_point("upgrade.locked")
        try:
            for attempt in range(self.settings.max_state_conflict_retries + 1):
                snapshot = await self.snapshot(lease.room_id)
                linking = await self.space_links.linking_rooms(lease.room_id)
                plan = self._plan(snapshot, lease.holder, request)
                fault_point("upgrade.planned")
                built = self._build(plan, snapshot)
                fault_point("upgrade.built")
                if self.before_commit is not None:
                    await self.before_commit(lease.room_id)
                try:
                    built = await self.store.db.run_in_transaction(
                        "upgrade_room", self._commit_txn, lease, snapshot, linking, plan, built
                    )
                except (StateConflict, RoomIdCollision) as e:
                    logger.info(
                        "room upgrade of %s: %s on attempt %d; planning again",
                        lease.room_id,
                        type(e).__name__,
                        attempt + 1,
                    )
                    continue
                fault_point("upgrade.committed")
                await self._after_commit(lease, plan, built)
                # Freeing a big room's snapshot, plan and built events takes tens of
                # milliseconds (10,000 members: about 30): done on the loop's next turn, after
                # this request's answer is written.
                asyncio.get_running_loop().call_soon(_drop, (snapshot, plan, built))
                return built.new_room_id
        except LockLost:
            logger.error("room upgrade of %s lost its lock (lease expired)", lease.room_id)
            raise UpgradeRefused("internal", upgrade_failed()) from None
        except asyncio.CancelledError:
            await asyncio.shield(self.locks.release(lease, "upgrade abandoned"))
            raise
        except DatabaseUnavailable as e:
            # Nothing committed; the client may retry once the database is back (503, not 500).
            await self._release_quietly(lease, "upgrade failed: database unavailable")
            raise UpgradeRefused("internal", e) from None
        except Exception:
            logger.exception("room upgrade of %s failed", lease.room_id)
            await self._release_quietly(lease, "upgrade failed: internal error")
            raise UpgradeRefused("internal", upgrade_failed()) from None
        logger.warning("room upgrade of %s: the state kept changing; giving up", lease.room_id)
        await self._release_quietly(lease, "upgrade failed: state conflict retries exhausted")
        raise UpgradeRefused("retries_exhausted", upgrade_failed())

    async def _release_quietly(self, lease: Lease, reason: str) -> None:
        try:
            await self.locks.release(lease, reason)
        except Exception:  # the lease expires anyway; the caller's answer matters more
            logger.exception("could not release the upgrade lock of %s", lease.room_id)

    async def snapshot(self, room_id: str) -> OldRoomSnapshot:
        """The old room's current state at one state group, with its extremities and aliases."""
        room = await self.store.rooms.get_room(room_id)
        if room is None:
            raise RuntimeError(f"room {room_id} vanished during its upgrade")
        group = room.current_state_group
        ids = await self.store.state.get_state_group_ids(group) if group is not None else {}
        wanted = {key: event_id for key, event_id in ids.items() if key[0] in SNAPSHOT_TYPES}
        events = await self.store.events.get_events(wanted.values())
        extremities = await self.store.events.get_forward_extremities(room_id)
        prev = await self.store.events.get_events(extremities.event_ids)
        return OldRoomSnapshot(
            room_id=room_id,
            room_version=get_room_version(room.room_version),
            is_public=room.is_public,
            state_group=group,
            state={key: events[eid] for key, eid in wanted.items() if eid in events},
            extremities=tuple(prev.values()),
            local_aliases=tuple(await self.store.aliases.get_aliases_for_room(room_id)),
        )

    def _plan(
        self, snapshot: OldRoomSnapshot, upgrader: str, request: UpgradeRequest
    ) -> UpgradePlan:
        return plan_upgrade(
            snapshot,
            upgrader=upgrader,
            new_version=request.new_version,
            additional_creators=request.additional_creators,
            policy=self.policy,
        )

    def _build(self, plan: UpgradePlan, snapshot: OldRoomSnapshot, **kw: Any) -> BuiltUpgrade:
        return build_upgrade(
            plan,
            snapshot,
            self.signer,
            clock=self.clock,
            new_room_id=lambda: new_room_id(self.server_name),
            **kw,
        )

    async def _commit_txn(
        self,
        txn: Transaction,
        lease: Lease,
        snapshot: OldRoomSnapshot,
        linking: frozenset[str],
        plan: UpgradePlan,
        built: BuiltUpgrade,
    ) -> BuiltUpgrade:
        """The whole upgrade in one transaction: both rooms' events, the outbox, aliases,
        directory, member data, the space links to the old room, the upgrade record and the
        old room's status."""
        old_room_id = snapshot.room_id
        await self._check_still_planned_txn(txn, lease, snapshot, linking)
        built = await self._follow_new_messages_txn(txn, snapshot, plan, built)
        now = await self._persist_new_room_txn(txn, plan, built)
        await self._persist_old_room_txn(txn, snapshot, built)
        await self._move_room_data_txn(txn, old_room_id, plan, built)
        await self.space_links.follow_txn(txn, old_room_id, built.new_room_id, plan.upgrader)
        await self._tombstone_old_room_txn(txn, old_room_id, plan, built.new_room_id, now)
        fault_point("upgrade.committing")
        return built

    async def _check_still_planned_txn(
        self, txn: Transaction, lease: Lease, snapshot: OldRoomSnapshot, linking: frozenset[str]
    ) -> None:
        """Lock the old room and the rooms linking to it (one sorted order: no deadlock with
        an upgrade of one of them); we still hold the upgrade lock, the old room's state is the
        snapshot's and no other room started linking to it (else :class:`LockLost` /
        :class:`StateConflict`: plan again)."""
        old_room_id = snapshot.room_id
        await self.store.persister.lock_rooms_txn(txn, [old_room_id, *linking])
        row = await self.store.upgrades.get_lock_row_txn(txn, old_room_id)
        if row is None or not holds(row, lease):
            raise LockLost(old_room_id)
        if row.current_state_group != snapshot.state_group:
            raise StateConflict(old_room_id)
        if not await self.space_links.linking_rooms(old_room_id, txn=txn) <= linking:
            raise StateConflict(old_room_id)

    async def _follow_new_messages_txn(
        self, txn: Transaction, snapshot: OldRoomSnapshot, plan: UpgradePlan, built: BuiltUpgrade
    ) -> BuiltUpgrade:
        """``built``, or built again on the old room's current extremities if messages (not
        state) arrived since: the plan stands, but the tombstone must follow them."""
        events = self.store.events
        extremities = await events.get_forward_extremities(snapshot.room_id, txn=txn)
        if frozenset(extremities.event_ids) == built.old_extremity_ids:
            return built
        prev = await events.get_events(extremities.event_ids, txn=txn)
        return self._build(plan, snapshot, extremities=list(prev.values()))

    async def _persist_new_room_txn(
        self, txn: Transaction, plan: UpgradePlan, built: BuiltUpgrade
    ) -> int:
        """Create the new room with its events; the create event's timestamp (the upgrade's
        time). A room ID already taken raises :class:`RoomIdCollision` (plan again)."""
        new_room_id_ = built.new_room_id
        if await room_exists_txn(txn, new_room_id_):
            raise RoomIdCollision(new_room_id_)
        now = built.new_events[0].origin_server_ts
        new_room = NewRoom(
            new_room_id_,
            plan.new_version.identifier,
            plan.upgrader,
            now,
            is_public=plan.publish,
        )
        try:
            await self.store.persist_events_txn(
                txn, [(e, None) for e in built.new_events], new_room=new_room
            )
        except (sqlite3.IntegrityError, asyncpg.UniqueViolationError):
            raise RoomIdCollision(new_room_id_) from None
        return now

    async def _persist_old_room_txn(
        self, txn: Transaction, snapshot: OldRoomSnapshot, built: BuiltUpgrade
    ) -> None:
        """The tombstone (on the snapshot's state) and what follows it in the old room; they
        reach the old room's other servers through the outbox."""
        old_batch = [(built.old_events[0], snapshot.state_group)]
        old_batch += [(e, None) for e in built.old_events[1:]]
        await self.store.persist_events_txn(txn, old_batch)
        await enqueue_events_txn(txn, self.store, built.old_events, our_server=self.server_name)

    async def _move_room_data_txn(
        self, txn: Transaction, old_room_id: str, plan: UpgradePlan, built: BuiltUpgrade
    ) -> None:
        """What follows the room: local aliases, the directory entry, members' tags and push
        rules, and the remote members' invites (to the outbox, as createRoom)."""
        store, new_room_id_ = self.store, built.new_room_id
        await store.aliases.move_aliases_txn(txn, old_room_id, new_room_id_)
        if plan.publish:
            await store.rooms.set_public_txn(txn, old_room_id, False)
        await store.upgrades.copy_member_data_txn(
            txn, old_room_id, new_room_id_, plan.local_members
        )
        await enqueue_remote_invites_txn(txn, store, built.new_events, our_server=self.server_name)

    async def _tombstone_old_room_txn(
        self, txn: Transaction, old_room_id: str, plan: UpgradePlan, new_room_id_: str, now: int
    ) -> None:
        """Record the upgrade and move the old room from upgrading to tombstoned."""
        await self.store.upgrades.record_upgrade_txn(
            txn,
            UpgradeRecord(
                old_room_id, new_room_id_, plan.upgrader, plan.new_version.identifier, now
            ),
        )
        transition(RoomStatus.UPGRADING, RoomStatus.TOMBSTONED, Actor.SYSTEM)
        moved = await self.store.rooms.transition_txn(
            txn,
            old_room_id,
            RoomStatus.UPGRADING,
            RoomStatus.TOMBSTONED,
            actor=Actor.SYSTEM,
            reason=f"upgraded to {new_room_id_} (room version {plan.new_version.identifier})",
            ts=now,
            replacement_room_id=new_room_id_,
        )
        if not moved:  # cannot happen under the row lock with our lease checked
            raise LockLost(old_room_id)

    async def _after_commit(self, lease: Lease, plan: UpgradePlan, built: BuiltUpgrade) -> None:
        self.notifier.notify([lease.room_id, built.new_room_id], plan.notify_users)
        await self.bus.publish(
            ROOM_UPGRADED,
            old_room_id=lease.room_id,
            new_room_id=built.new_room_id,
            new_version=plan.new_version.identifier,
        )
