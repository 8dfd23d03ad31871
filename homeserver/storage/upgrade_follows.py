"""The queue of our users following another server's room upgrade (``remote_upgrade_follows``).

A row is written in the transaction that stores the old room's tombstone, one per local user
joined there, and moves through states under compare-and-set, so that two workers (or two
processes on one database) never both work one row: ``claim`` takes a due ``queued`` row (or a
``running`` one whose claim expired: its worker died) under a fresh token, and every later
change names that token. ``pending`` rows (the replacement refused the join) are queued again
when an invite for the user to the replacement arrives.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.crypto.canonical_json import parse_json
from homeserver.storage.account_data import GLOBAL
from homeserver.storage.database import Database, Transaction, in_chunks, placeholders

logger = logging.getLogger(__name__)

QUEUED = "queued"
RUNNING = "running"
DONE = "done"
PENDING = "pending"
SKIPPED = "skipped"
FAILED = "failed"
#: states a worker may finish a claimed row with.
FINAL_STATES = frozenset({DONE, PENDING, SKIPPED, FAILED})

FollowListener = Callable[[], None]

_COLUMNS = (
    "old_room_id, user_id, new_room_id, via, state, attempts, retry_interval_ms,"
    " next_attempt_ts, claim, claimed_until, last_error, created_ts, updated_ts"
)


@dataclass(frozen=True, slots=True)
class Follow:
    old_room_id: str
    user_id: str
    new_room_id: str
    #: servers to join through, best first (the tombstone's sender's, then the old room's).
    via: tuple[str, ...]
    state: str
    attempts: int
    retry_interval_ms: int
    next_attempt_ts: int
    claim: str | None
    claimed_until: int | None
    last_error: str | None
    created_ts: int
    updated_ts: int


def _follow(row: Sequence[Any]) -> Follow:
    via = json.loads(row[3])
    return Follow(
        row[0],
        row[1],
        row[2],
        tuple(s for s in via if isinstance(s, str)) if isinstance(via, list) else (),
        row[4],
        int(row[5]),
        int(row[6]),
        int(row[7]),
        row[8],
        None if row[9] is None else int(row[9]),
        row[10],
        int(row[11]),
        int(row[12]),
    )


#: The most users named in one statement's ``IN`` list.
IN_CHUNK = 500


def _by_old_room(follows: Iterable[Follow]) -> list[tuple[str, list[str]]]:
    """The users of ``follows`` by old room (each once)."""
    grouped: dict[str, dict[str, None]] = {}
    for follow in follows:
        grouped.setdefault(follow.old_room_id, {})[follow.user_id] = None
    return [(room, list(users)) for room, users in grouped.items()]


class _Queued:
    """A transaction's memo: it queued follows (listeners are told after commit)."""


class UpgradeFollowsStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._listeners: list[FollowListener] = []

    def add_listener(self, listener: FollowListener) -> None:
        """Call ``listener()`` after each commit that queued (or re-queued) follows."""
        self._listeners.append(listener)

    def remove_listener(self, listener: FollowListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _announce_after_commit(self, txn: Transaction) -> None:
        if txn.context.get(_Queued) is None:
            txn.context.setdefault(_Queued, _Queued)
            txn.call_after_commit(self._announce)

    def _announce(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                logger.exception("upgrade follow listener failed")

    # --- writing the queue ------------------------------------------------------------------
    async def queue_txn(
        self,
        txn: Transaction,
        old_room_id: str,
        new_room_id: str,
        users: Iterable[str],
        via: Sequence[str],
        *,
        now: int,
    ) -> int:
        """One ``queued`` row per user (a user already queued for this old room keeps their
        row: exactly once per user); returns how many rows were added."""
        via_json = json.dumps(list(via))
        added = 0
        for user_id in users:
            added += await txn.execute(
                f"INSERT INTO remote_upgrade_follows ({_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, 0, 0, ?, NULL, NULL, NULL, ?, ?)"
                " ON CONFLICT (old_room_id, user_id) DO NOTHING",
                old_room_id,
                user_id,
                new_room_id,
                via_json,
                QUEUED,
                now,
                now,
                now,
            )
        if added:
            self._announce_after_commit(txn)
        return added

    async def requeue_pending(self, user_id: str, new_room_id: str, *, now: int) -> int:
        """An invite for ``user_id`` to ``new_room_id`` arrived: their refused follows into it
        are due again."""

        async def run(txn: Transaction) -> int:
            changed = await txn.execute(
                "UPDATE remote_upgrade_follows SET state = ?, next_attempt_ts = ?,"
                " retry_interval_ms = 0, updated_ts = ?"
                " WHERE new_room_id = ? AND user_id = ? AND state = ?",
                QUEUED,
                now,
                now,
                new_room_id,
                user_id,
                PENDING,
            )
            if changed:
                self._announce_after_commit(txn)
            return changed

        return await self.db.run_in_transaction("requeue_upgrade_follow", run)

    # --- the worker's side ------------------------------------------------------------------
    async def due(self, now: int, limit: int = 100) -> list[Follow]:
        """Rows a worker may claim now: queued and due, or running under an expired claim;
        grouped by replacement room, oldest first within one."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM remote_upgrade_follows"
            " WHERE (state = ? AND next_attempt_ts <= ?)"
            " OR (state = ? AND claimed_until <= ?)"
            " ORDER BY new_room_id, created_ts, user_id LIMIT ?",
            QUEUED,
            now,
            RUNNING,
            now,
            limit,
        )
        return [_follow(r) for r in rows]

    async def next_due_ts(self) -> int | None:
        """When the earliest queued row is due (or a running claim expires); None: no work."""
        value = await self.db.fetchval(
            "SELECT MIN(CASE WHEN state = ? THEN next_attempt_ts ELSE claimed_until END)"
            " FROM remote_upgrade_follows WHERE state IN (?, ?)",
            QUEUED,
            QUEUED,
            RUNNING,
        )
        return None if value is None else int(value)

    async def claim(self, follow: Follow, *, now: int, lease_ms: int) -> str | None:
        """Take ``follow`` for this worker until ``now + lease_ms``; its token, or None when
        another worker took (or finished) it first."""
        token = uuid.uuid4().hex

        async def run(txn: Transaction) -> bool:
            return await self._claim_txn(txn, follow, token, now, lease_ms)

        return token if await self.db.run_in_transaction("claim_upgrade_follow", run) else None

    async def claim_many(
        self, follows: Sequence[Follow], *, now: int, lease_ms: int
    ) -> dict[tuple[str, str], str]:
        """:meth:`claim` for many rows in one transaction (one statement per old room and
        :data:`IN_CHUNK` users): ``(old_room_id, user_id)`` → token of each row this worker
        took (the others were taken or finished by another). The rows share one token."""
        token = uuid.uuid4().hex

        async def run(txn: Transaction) -> dict[tuple[str, str], str]:
            taken: dict[tuple[str, str], str] = {}
            for old_room_id, users in _by_old_room(follows):
                for chunk in in_chunks(users, IN_CHUNK):
                    rows = await txn.fetchall(
                        "UPDATE remote_upgrade_follows SET state = ?, claim = ?,"
                        " claimed_until = ?, attempts = attempts + 1, updated_ts = ?"
                        f" WHERE old_room_id = ? AND user_id IN ({placeholders(len(chunk))})"
                        " AND ((state = ? AND next_attempt_ts <= ?)"
                        " OR (state = ? AND claimed_until <= ?)) RETURNING user_id",
                        RUNNING,
                        token,
                        now + lease_ms,
                        now,
                        old_room_id,
                        *chunk,
                        QUEUED,
                        now,
                        RUNNING,
                        now,
                    )
                    taken.update(((old_room_id, r[0]), token) for r in rows)
            return taken

        return await self.db.run_in_transaction("claim_upgrade_follows", run)

    async def _claim_txn(
        self, txn: Transaction, follow: Follow, token: str, now: int, lease_ms: int
    ) -> bool:
        changed = await txn.execute(
            "UPDATE remote_upgrade_follows SET state = ?, claim = ?, claimed_until = ?,"
            " attempts = attempts + 1, updated_ts = ?"
            " WHERE old_room_id = ? AND user_id = ?"
            " AND ((state = ? AND next_attempt_ts <= ?)"
            " OR (state = ? AND claimed_until <= ?))",
            RUNNING,
            token,
            now + lease_ms,
            now,
            follow.old_room_id,
            follow.user_id,
            QUEUED,
            now,
            RUNNING,
            now,
        )
        return changed == 1

    async def finish_many_txn(
        self, txn: Transaction, follows: Sequence[Follow], token: str, state: str, *, now: int
    ) -> int:
        """:meth:`finish` for rows claimed together (:meth:`claim_many`: one ``token``) inside
        the caller's transaction (the one that did their work); returns how many were still
        this worker's."""
        if state not in FINAL_STATES:
            raise ValueError(f"not a final state: {state}")
        done = 0
        for old_room_id, users in _by_old_room(follows):
            for chunk in in_chunks(users, IN_CHUNK):
                done += await txn.execute(
                    "UPDATE remote_upgrade_follows SET state = ?, claim = NULL,"
                    " claimed_until = NULL, last_error = NULL, updated_ts = ?"
                    f" WHERE old_room_id = ? AND user_id IN ({placeholders(len(chunk))})"
                    " AND state = ? AND claim = ?",
                    state,
                    now,
                    old_room_id,
                    *chunk,
                    RUNNING,
                    token,
                )
        return done

    async def _finish_txn(
        self,
        txn: Transaction,
        follow: Follow,
        token: str,
        state: str,
        now: int,
        error: str | None,
    ) -> int:
        return await txn.execute(
            "UPDATE remote_upgrade_follows SET state = ?, claim = NULL, claimed_until = NULL,"
            " last_error = ?, updated_ts = ?"
            " WHERE old_room_id = ? AND user_id = ? AND state = ? AND claim = ?",
            state,
            error,
            now,
            follow.old_room_id,
            follow.user_id,
            RUNNING,
            token,
        )

    async def finish(
        self, follow: Follow, token: str, state: str, *, now: int, error: str | None = None
    ) -> bool:
        """End a claimed row in ``state`` (one of :data:`FINAL_STATES`); False when the claim
        was lost (it expired and another worker took the row)."""
        if state not in FINAL_STATES:
            raise ValueError(f"not a final state: {state}")

        async def run(txn: Transaction) -> int:
            return await self._finish_txn(txn, follow, token, state, now, error)

        return await self.db.run_in_transaction("finish_upgrade_follow", run) == 1

    async def retry_later(
        self,
        follow: Follow,
        token: str,
        *,
        now: int,
        next_attempt_ts: int,
        retry_interval_ms: int,
        error: str,
        whole_room: bool = False,
    ) -> bool:
        """Put a claimed row back in the queue, due at ``next_attempt_ts``; ``whole_room``:
        the other queued rows of the replacement wait as long (they would go through the same
        unreachable servers)."""

        async def run(txn: Transaction) -> int:
            changed = await txn.execute(
                "UPDATE remote_upgrade_follows SET state = ?, claim = NULL, claimed_until = NULL,"
                " next_attempt_ts = ?, retry_interval_ms = ?, last_error = ?, updated_ts = ?"
                " WHERE old_room_id = ? AND user_id = ? AND state = ? AND claim = ?",
                QUEUED,
                next_attempt_ts,
                retry_interval_ms,
                error,
                now,
                follow.old_room_id,
                follow.user_id,
                RUNNING,
                token,
            )
            if changed and whole_room:
                await txn.execute(
                    "UPDATE remote_upgrade_follows SET next_attempt_ts = ?, updated_ts = ?"
                    " WHERE new_room_id = ? AND state = ? AND next_attempt_ts < ?",
                    next_attempt_ts,
                    now,
                    follow.new_room_id,
                    QUEUED,
                    next_attempt_ts,
                )
            return changed

        return await self.db.run_in_transaction("retry_upgrade_follow", run) == 1

    # --- who follows (read in the tombstone's transaction) ----------------------------------
    async def joined_members_txn(self, txn: Transaction, room_id: str) -> list[str]:
        """The room's members whose current membership is ``join``."""
        rows = await txn.fetchall(
            "SELECT state_key FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member' AND membership = 'join'",
            room_id,
        )
        return [r[0] for r in rows]

    async def account_data_of_txn(
        self, txn: Transaction, users: Sequence[str], data_type: str
    ) -> dict[str, Any]:
        """The global account data of type ``data_type`` of each of ``users`` that has it."""
        found: dict[str, Any] = {}
        for start in range(0, len(users), 500):
            chunk = users[start : start + 500]
            rows = await txn.fetchall(
                "SELECT user_id, content FROM account_data WHERE room_id = ? AND type = ?"
                f" AND user_id IN ({placeholders(len(chunk))})",
                GLOBAL,
                data_type,
                *chunk,
            )
            for user_id, text in rows:
                found[user_id] = parse_json(text)
        return found

    # --- reads ------------------------------------------------------------------------------
    async def get(self, old_room_id: str, user_id: str) -> Follow | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM remote_upgrade_follows WHERE old_room_id = ? AND user_id = ?",
            old_room_id,
            user_id,
        )
        return None if row is None else _follow(row)

    async def for_old_room(self, old_room_id: str) -> list[Follow]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM remote_upgrade_follows WHERE old_room_id = ?"
            " ORDER BY created_ts, user_id",
            old_room_id,
        )
        return [_follow(r) for r in rows]
