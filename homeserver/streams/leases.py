"""This process's leases and heartbeat: what makes work happen once among processes sharing one
database (issue 17; the rows are ``storage/leases.py``).

:class:`LeaseKeeper` takes named leases for this instance, renews them every third of the lease
timeout in one statement, and notices loss: a lease another process took (its token changed),
or one this process could not renew in time (the database was out of reach) is dropped from
:meth:`LeaseKeeper.holds` — which also answers False once the local expiry has passed, so work
stops before another process may start it. The same round writes this instance's heartbeat;
:meth:`LeaseKeeper.live_instances` are the instances seen within the timeout (the federation
sender shards destinations over them). On PostgreSQL a killed process is known dead at once
(its liveness lock went with its connection): it leaves the live list and its leases are taken
over without waiting for them to expire. Callbacks added with :meth:`LeaseKeeper.on_tick` run
after each round (singleton jobs, the sender's rebalance).

:class:`SingletonJob` runs a background service on exactly one live process: whichever takes
its lease starts it, stops it when the lease is lost, and gives the lease up when it stops;
the others try again at every round, so a dead holder's job moves within one timeout (at
its next round on PostgreSQL, where a killed process is known dead at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from homeserver.clock import WallClock
from homeserver.storage import Store

logger = logging.getLogger(__name__)

TickCallback = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class _Held:
    token: str
    #: local deadline: past it, the lease may be someone else's.
    expires_ts: int


class LeaseKeeper:
    def __init__(
        self,
        store: Store,
        instance_name: str,
        clock: WallClock,
        *,
        timeout_ms: int,
        renew_interval_s: float | None = None,
    ) -> None:
        self.store = store
        self.instance_name = instance_name
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.renew_interval_s = (
            renew_interval_s if renew_interval_s is not None else timeout_ms / 3000
        )
        #: a lease is treated as lost this long before its recorded expiry (clock skew, the
        #: time a renewal takes).
        self.margin_ms = max(timeout_ms // 6, 1)
        self._held: dict[str, _Held] = {}
        self._ticks: list[TickCallback] = []
        self._task: asyncio.Task[None] | None = None
        self._started_ts = 0
        self._live: list[str] = [instance_name]

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Announce this instance and renew from now on (idempotent)."""
        if self._task is not None:
            return
        self._started_ts = self.clock()
        await self._heartbeat()
        self._task = asyncio.create_task(self._loop(), name="lease keeper")

    async def stop(self) -> None:
        """Stop renewing, give up every lease and leave the live list: the other processes
        take this one's work over at their next round instead of after the timeout."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._held.clear()
        try:
            await self.store.leases.release_all(self.instance_name)
            await self.store.leases.forget_instance(self.instance_name)
        except Exception:
            logger.warning("could not give up this instance's leases; they will expire")

    def on_tick(self, callback: TickCallback) -> None:
        """Await ``callback()`` after each renewal round."""
        self._ticks.append(callback)

    # --- leases -------------------------------------------------------------------------------
    async def try_acquire(self, name: str) -> bool:
        """Take ``name`` for this instance (True if already held): when it is free or expired,
        or at once from a holder whose process is known dead (:meth:`_take_from_dead`)."""
        if self.holds(name):
            return True
        token = secrets.token_hex(8)
        now = self.clock()
        if not await self.store.leases.try_acquire(
            name, self.instance_name, token, now=now, timeout_ms=self.timeout_ms
        ) and not await self._take_from_dead(name, token, now):
            return False
        self._held[name] = _Held(token, now + self.timeout_ms - self.margin_ms)
        return True

    async def _take_from_dead(self, name: str, token: str, now: int) -> bool:
        """Take ``name`` before it expires if its holder announced itself (a heartbeat row:
        it started, and did not stop cleanly) and its liveness lock is free: its process is
        gone (PostgreSQL only; on SQLite a lease is only ever taken once expired). Waiting for
        the expiry instead would let a dead process's destinations queue a lease timeout's
        worth of PDUs, which the new owner would then push at the peer all at once: Synapse
        drops all but the newest of more than 100 PDUs of a room queued for processing and
        fetches the rest back (/get_missing_events, /backfill), receiving them twice.

        Should a live process lose its liveness connection, the next round of its keeper
        re-claims it and finds such leases lost (their token changed); meanwhile a transaction
        it was sending may also be sent by the new holder, under the same ID (the peer
        dedupes)."""
        if not self.store.db.tracks_liveness:
            return False
        row = await self.store.leases.get(name)
        if row is None or row.holder == self.instance_name:
            return False
        if not await self.store.leases.has_instance(row.holder):
            return False
        if await self.instance_alive(row.holder):
            return False
        if not await self.store.leases.take_over(
            name,
            from_holder=row.holder,
            from_token=row.token,
            holder=self.instance_name,
            token=token,
            now=now,
            timeout_ms=self.timeout_ms,
        ):
            return False
        logger.info("lease %s taken over from %s, whose process is gone", name, row.holder)
        return True

    def holds(self, name: str) -> bool:
        """Whether this instance holds ``name`` now (False once the local deadline passed
        without a renewal)."""
        held = self._held.get(name)
        return held is not None and self.clock() < held.expires_ts

    def held_names(self) -> list[str]:
        return sorted(n for n in self._held if self.holds(n))

    async def release(self, name: str) -> None:
        held = self._held.pop(name, None)
        if held is not None:
            await self.store.leases.release(name, held.token)

    # --- instances ----------------------------------------------------------------------------
    def _liveness_key(self, instance_name: str) -> int:
        return self.store.db.lock_key("instance", instance_name)

    async def instance_alive(self, instance_name: str) -> bool:
        """Whether the process named ``instance_name`` is running now, from its liveness lock
        (PostgreSQL releases it the moment the process's connection goes: a killed process is
        known dead at once, without waiting for its heartbeat to age). This process counts as
        alive; on SQLite no other process can be."""
        if instance_name == self.instance_name:
            return True
        return await self.store.db.is_alive(self._liveness_key(instance_name))

    async def _claim_liveness(self) -> None:
        if not await self.store.db.claim_liveness(self._liveness_key(self.instance_name)):
            logger.error(
                "another running process has instance_name %r: give each process its own",
                self.instance_name,
            )

    def live_instances(self) -> list[str]:
        """The instances seen alive at the last round (this one always among them)."""
        return self._live

    async def refresh_live_instances(self) -> list[str]:
        """The instances whose heartbeat is recent, less (on PostgreSQL) those whose liveness
        lock is free: a killed process leaves the list at once, so its share (the federation
        destinations it delivered) moves without waiting for its heartbeat to age."""
        live = await self.store.leases.live_instances(now=self.clock(), timeout_ms=self.timeout_ms)
        if self.store.db.tracks_liveness:
            live = [i for i in live if i == self.instance_name or await self.instance_alive(i)]
        if self.instance_name not in live:
            live = sorted([*live, self.instance_name])
        self._live = live
        return live

    # --- the round ----------------------------------------------------------------------------
    async def renew_now(self) -> None:
        """One round: heartbeat, renew every held lease, drop the lost ones, run the ticks."""
        await self._heartbeat()
        await self.refresh_live_instances()
        if self._held:
            now = self.clock()
            tokens = {name: held.token for name, held in self._held.items()}
            kept = await self.store.leases.renew(
                self.instance_name, tokens, now=now, timeout_ms=self.timeout_ms
            )
            for name in list(self._held):
                if name in kept:
                    self._held[name].expires_ts = now + self.timeout_ms - self.margin_ms
                elif tokens.get(name) == self._held[name].token:
                    logger.warning("lease %s was lost", name)
                    del self._held[name]
        await self._run_ticks()

    async def _run_ticks(self) -> None:
        for tick in list(self._ticks):
            try:
                await tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("lease round callback %r failed", tick)

    async def _heartbeat(self) -> None:
        await self._claim_liveness()
        await self.store.leases.heartbeat(
            self.instance_name, now=self.clock(), started_ts=self._started_ts
        )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.renew_interval_s)
            try:
                await self.renew_now()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # The database is out of reach: leases run out locally (holds() turns False at
                # the deadline), and the next round tries again.
                logger.warning("could not renew leases: %s", e)
                # Jobs whose lease ran out locally stop now, not when the database is back.
                await self._run_ticks()


async def _nothing() -> None:
    return None


class SingletonJob:
    """A background service that runs on one live process at a time, under lease ``name``."""

    def __init__(
        self,
        keeper: LeaseKeeper,
        name: str,
        start: Callable[[], Awaitable[None]] | None = None,
        stop: Callable[[], Awaitable[None]] | None = None,
        *,
        every_round: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.keeper = keeper
        self.name = name
        self._start = start or _nothing
        self._stop = stop or _nothing
        #: work done at each lease round while this process holds the job (a sweep).
        self._every_round = every_round
        self.running = False
        self._enabled = False
        self._lock = asyncio.Lock()

    async def enable(self) -> None:
        """Take part: try now, and at every round of the keeper."""
        if not self._enabled:
            self._enabled = True
            self.keeper.on_tick(self.check)
        await self.check()

    async def check(self) -> None:
        """Start the job if its lease can be taken, stop it if the lease was lost."""
        async with self._lock:
            if not self._enabled:
                return
            if self.running and not self.keeper.holds(self.name):
                logger.warning("job %s: lease lost, stopping here", self.name)
                self.running = False
                await self._stop()
            if not self.running and await self.keeper.try_acquire(self.name):
                logger.info("job %s runs on %s", self.name, self.keeper.instance_name)
                self.running = True
                await self._start()
            if self.running and self._every_round is not None:
                await self._every_round()

    async def disable(self) -> None:
        """Stop the job here and give its lease up, so another process takes it at once."""
        async with self._lock:
            self._enabled = False
            if self.running:
                self.running = False
                await self._stop()
            await self.keeper.release(self.name)
