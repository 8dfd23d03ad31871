"""Room upgrades: the upgrade lock's row columns read under the room lock, the durable record
of completed upgrades, and the per-user data an upgrade carries over (tags, ``m.direct``,
per-room push rules) — read by the members' keys, a few hundred members per statement.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from homeserver.crypto.canonical_json import parse_json
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.storage.database import Database, Transaction, in_chunks, placeholders
from homeserver.storage.push_rules import PushRulesStore

#: members whose account data one statement reads.
_MEMBER_CHUNK = 500


@dataclass(frozen=True, slots=True)
class LockRow:
    status: str
    holder: str | None
    expires_ts: int | None
    replacement_room_id: str | None
    current_state_group: int | None
    #: the process that took the lock (None: taken before migration 028).
    instance: str | None = None


@dataclass(frozen=True, slots=True)
class UpgradingRoom:
    """A room held ``upgrading``: by whom, on which process, until when."""

    room_id: str
    holder: str | None
    instance: str | None
    expires_ts: int | None


@dataclass(frozen=True, slots=True)
class UpgradeRecord:
    old_room_id: str
    new_room_id: str
    upgrader: str
    new_version: str
    ts: int


class UpgradesStore:
    def __init__(
        self, db: Database, account_data: AccountDataStore, push_rules: PushRulesStore
    ) -> None:
        self.db = db
        self.account_data = account_data
        self.push_rules = push_rules

    # --- the lock row --------------------------------------------------------------------
    async def get_lock_row_txn(self, txn: Transaction, room_id: str) -> LockRow | None:
        """The room's lifecycle columns; call after locking the row (``lock_rooms_txn``)."""
        row = await txn.fetchone(
            "SELECT status, upgrade_lock_holder, upgrade_lock_expires_ts, replacement_room_id,"
            " current_state_group, upgrade_lock_instance FROM rooms WHERE room_id = ?",
            room_id,
        )
        if row is None:
            return None
        return LockRow(
            status=row[0],
            holder=row[1],
            expires_ts=None if row[2] is None else int(row[2]),
            replacement_room_id=row[3],
            current_state_group=None if row[4] is None else int(row[4]),
            instance=row[5],
        )

    async def get_upgrading_rooms(self) -> list[UpgradingRoom]:
        rows = await self.db.fetchall(
            "SELECT room_id, upgrade_lock_holder, upgrade_lock_instance, upgrade_lock_expires_ts"
            " FROM rooms WHERE status = 'upgrading' ORDER BY room_id"
        )
        return [UpgradingRoom(r[0], r[1], r[2], None if r[3] is None else int(r[3])) for r in rows]

    async def get_upgrading_room_ids(self) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT room_id FROM rooms WHERE status = 'upgrading' ORDER BY room_id"
        )
        return [r[0] for r in rows]

    # --- completed upgrades --------------------------------------------------------------
    async def record_upgrade_txn(self, txn: Transaction, record: UpgradeRecord) -> None:
        await txn.execute(
            "INSERT INTO room_upgrades (old_room_id, new_room_id, upgrader, new_version, ts)"
            " VALUES (?, ?, ?, ?, ?)",
            record.old_room_id,
            record.new_room_id,
            record.upgrader,
            record.new_version,
            record.ts,
        )

    async def get_upgrade(self, old_room_id: str) -> UpgradeRecord | None:
        row = await self.db.fetchone(
            "SELECT old_room_id, new_room_id, upgrader, new_version, ts FROM room_upgrades"
            " WHERE old_room_id = ?",
            old_room_id,
        )
        return None if row is None else UpgradeRecord(row[0], row[1], row[2], row[3], int(row[4]))

    # --- per-user data carried over ------------------------------------------------------
    async def copy_member_data_txn(
        self, txn: Transaction, old_room_id: str, new_room_id: str, users: Collection[str]
    ) -> int:
        """Copy the room tags, ``m.direct`` entries and per-room push rules of ``users`` (the
        old room's local joined members) to the new room; returns how many entries changed.

        Everything is read by the members' keys (the primary keys of account data and push
        rules lead with the user), a chunk of members per statement: the work follows the
        room's size, never the server's (a query by room and type would read every account's
        data). Only the users that have something get a write."""
        new_tags: dict[str, dict[str, Any]] = {}
        new_directs: dict[str, dict[str, Any]] = {}
        rule_users: set[str] = set()
        for chunk in in_chunks(sorted(set(users)), _MEMBER_CHUNK):
            # m.direct maps user → [room IDs]; the old room's ID (a quoted JSON string) spares
            # parsing the accounts that do not name it. A '_' in the ID is a LIKE wildcard,
            # which can only widen the match; the JSON check has the last word.
            rows = await txn.fetchall(
                "SELECT user_id, room_id, content FROM account_data"
                f" WHERE user_id IN ({placeholders(len(chunk))})"
                " AND ((room_id = ? AND type = 'm.tag')"
                " OR (room_id = ? AND type = 'm.direct' AND content LIKE ?))",
                *chunk,
                old_room_id,
                GLOBAL,
                f'%"{old_room_id}"%',
            )
            for user_id, room_id, text in rows:
                content = parse_json(text)
                if room_id == old_room_id:
                    if isinstance(content, dict):
                        new_tags[user_id] = content
                    continue
                updated = _add_to_direct(content, old_room_id, new_room_id)
                if updated is not None:
                    new_directs[user_id] = updated
            rules = await txn.fetchall(
                "SELECT user_id FROM push_rules"
                f" WHERE user_id IN ({placeholders(len(chunk))}) AND kind = 'room' AND rule_id = ?",
                *chunk,
                old_room_id,
            )
            rule_users.update(user_id for (user_id,) in rules)
        # Each write takes its user's account-data lock until commit: user by user, in one
        # order, so that two upgrades (or joins) sharing members cannot each hold one member's
        # lock and wait for another's.
        changed = 0
        for user_id in sorted(new_tags.keys() | new_directs.keys() | rule_users):
            if user_id in new_tags:
                await self.account_data.set_account_data_txn(
                    txn, user_id, new_room_id, "m.tag", new_tags[user_id]
                )
                changed += 1
            if user_id in new_directs:
                await self.account_data.set_account_data_txn(
                    txn, user_id, GLOBAL, "m.direct", new_directs[user_id]
                )
                changed += 1
            if user_id in rule_users and await self.push_rules.copy_room_rule_txn(
                txn, user_id, old_room_id, new_room_id
            ):
                changed += 1
        return changed


def _add_to_direct(content: Any, old_room_id: str, new_room_id: str) -> dict[str, Any] | None:
    """``m.direct`` with ``new_room_id`` appended to the first list naming ``old_room_id``
    (as Synapse), or None if no list names it (or it is there already)."""
    if not isinstance(content, dict):
        return None
    for user_id, rooms in content.items():
        if isinstance(rooms, list) and old_room_id in rooms:
            if new_room_id in rooms:
                return None
            return {**content, user_id: [*rooms, new_room_id]}
    return None
