"""Leases and instance heartbeats (migration 028): the database side of work that must happen
once among processes sharing one database.

A lease is one row per piece of work: ``(name, holder, token, expires_ts)``. Every change is a
compare-and-set in one statement, so two processes can never both believe they hold a lease:

* :meth:`LeasesStore.try_acquire` takes it when it is free, expired, or held by the same
  ``holder`` under another token (that holder's previous run, which is gone);
* :meth:`LeasesStore.renew` extends those still held under their tokens (a lease that expired
  but that nobody took is still its holder's: nothing happened in between);
* :meth:`LeasesStore.release` gives one up, only under its token;
* :meth:`LeasesStore.take_over` takes one before it expires from a holder whose process is known
  dead, only while that holder still has it under the token seen.

Times are the callers' clock (ms); processes must keep their clocks in step (NTP) well within
the lease timeout, as Synapse's worker locks assume too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from homeserver.storage.database import Database, placeholders


@dataclass(frozen=True, slots=True)
class LeaseRow:
    name: str
    holder: str
    token: str
    acquired_ts: int
    expires_ts: int


class LeasesStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- leases -------------------------------------------------------------------------------
    async def try_acquire(
        self, name: str, holder: str, token: str, *, now: int, timeout_ms: int
    ) -> bool:
        """Take ``name`` for ``holder`` under ``token`` until ``now + timeout_ms``; False if
        another holder's lease on it is still running."""
        async with self.db.transaction("lease_acquire") as txn:
            changed = await txn.execute(
                "INSERT INTO leases (name, holder, token, acquired_ts, expires_ts)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " token = excluded.token, acquired_ts = excluded.acquired_ts,"
                " expires_ts = excluded.expires_ts"
                " WHERE leases.expires_ts < excluded.acquired_ts"
                " OR (leases.holder = excluded.holder AND leases.token <> excluded.token)",
                name,
                holder,
                token,
                now,
                now + timeout_ms,
            )
        return changed == 1

    async def take_over(
        self,
        name: str,
        *,
        from_holder: str,
        from_token: str,
        holder: str,
        token: str,
        now: int,
        timeout_ms: int,
    ) -> bool:
        """Take ``name`` from ``from_holder`` before it expires, only if it is still held by
        that holder under ``from_token`` (the caller found that holder's process dead)."""
        async with self.db.transaction("lease_take_over") as txn:
            changed = await txn.execute(
                "UPDATE leases SET holder = ?, token = ?, acquired_ts = ?, expires_ts = ?"
                " WHERE name = ? AND holder = ? AND token = ?",
                holder,
                token,
                now,
                now + timeout_ms,
                name,
                from_holder,
                from_token,
            )
        return changed == 1

    async def renew(
        self, holder: str, tokens: Mapping[str, str], *, now: int, timeout_ms: int
    ) -> set[str]:
        """Extend each lease ``name → token`` of ``holder`` still held under that token (tokens
        are unique per acquisition); returns the names still held (the rest were lost)."""
        by_token = {token: name for name, token in tokens.items()}
        held: set[str] = set()
        if not by_token:
            return held
        token_list = list(by_token)
        async with self.db.transaction("lease_renew") as txn:
            for start in range(0, len(token_list), 500):
                chunk = token_list[start : start + 500]
                rows = await txn.fetchall(
                    "UPDATE leases SET expires_ts = ?"
                    f" WHERE holder = ? AND token IN ({placeholders(len(chunk))})"
                    " RETURNING name, token",
                    now + timeout_ms,
                    holder,
                    *chunk,
                )
                held.update(r[0] for r in rows if by_token.get(r[1]) == r[0])
        return held

    async def release(self, name: str, token: str) -> bool:
        """Give up ``name`` if it is still held under ``token``."""
        async with self.db.transaction("lease_release") as txn:
            return (
                await txn.execute("DELETE FROM leases WHERE name = ? AND token = ?", name, token)
                == 1
            )

    async def release_all(self, holder: str) -> int:
        """Give up every lease of ``holder`` (a clean shutdown: the others take over at once)."""
        async with self.db.transaction("lease_release_all") as txn:
            return await txn.execute("DELETE FROM leases WHERE holder = ?", holder)

    async def get(self, name: str) -> LeaseRow | None:
        row = await self.db.fetchone(
            "SELECT name, holder, token, acquired_ts, expires_ts FROM leases WHERE name = ?",
            name,
        )
        return None if row is None else LeaseRow(row[0], row[1], row[2], int(row[3]), int(row[4]))

    async def held_names(self, names: Iterable[str], *, now: int) -> dict[str, str]:
        """Of ``names``, those someone holds now: name → holder."""
        wanted = list(names)
        held: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = await self.db.fetchall(
                "SELECT name, holder FROM leases"
                f" WHERE name IN ({placeholders(len(chunk))}) AND expires_ts >= ?",
                *chunk,
                now,
            )
            held.update((r[0], r[1]) for r in rows)
        return held

    # --- instances ----------------------------------------------------------------------------
    async def heartbeat(self, instance_name: str, *, now: int, started_ts: int) -> None:
        async with self.db.transaction("instance_heartbeat") as txn:
            await txn.execute(
                "INSERT INTO instances (instance_name, started_ts, last_seen_ts) VALUES (?, ?, ?)"
                " ON CONFLICT (instance_name) DO UPDATE SET started_ts = excluded.started_ts,"
                " last_seen_ts = excluded.last_seen_ts",
                instance_name,
                started_ts,
                now,
            )

    async def live_instances(self, *, now: int, timeout_ms: int) -> list[str]:
        """The instances seen within ``timeout_ms``, sorted."""
        rows = await self.db.fetchall(
            "SELECT instance_name FROM instances WHERE last_seen_ts >= ? ORDER BY instance_name",
            now - timeout_ms,
        )
        return [r[0] for r in rows]

    async def has_instance(self, instance_name: str) -> bool:
        """Whether ``instance_name`` has announced itself and not stopped cleanly."""
        row = await self.db.fetchone(
            "SELECT 1 FROM instances WHERE instance_name = ?", instance_name
        )
        return row is not None

    async def forget_instance(self, instance_name: str) -> None:
        """A clean stop: no longer counted live, so its share is taken over at once."""
        async with self.db.transaction("instance_forget") as txn:
            await txn.execute("DELETE FROM instances WHERE instance_name = ?", instance_name)
