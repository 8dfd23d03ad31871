"""A user's push rules: their own rules and their overrides of the server-default rules.

Rows whose ``rule_id`` starts with ``.`` only change a default rule's ``enabled`` flag or
``actions`` (NULL keeps the default's); the others are the user's own rules, ordered within
their kind by ``priority`` (higher first). Every change bumps the user's push-rules position on
the account_data stream, in the same transaction, so /sync sends ``m.push_rules``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Database, Transaction, placeholders


@dataclass(frozen=True, slots=True)
class StoredRule:
    kind: str
    rule_id: str
    priority: int
    conditions: list[Any] | None
    pattern: str | None
    actions: list[Any] | None
    enabled: bool | None


class UnknownAnchorError(Exception):
    """``before``/``after`` names no rule of the user's in that kind."""


def _json_or_none(text: str | None) -> Any:
    return None if text is None else parse_json(text)


class PushRulesStore:
    def __init__(self, db: Database, account_data: AccountDataStore) -> None:
        self.db = db
        self.account_data = account_data

    async def users_with_rules(self, user_ids: Sequence[str]) -> set[str]:
        """Those of ``user_ids`` with any stored row (the others have the defaults only)."""
        found: set[str] = set()
        ids = list(dict.fromkeys(user_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = await self.db.indexed.fetchall(
                "SELECT DISTINCT user_id FROM push_rules"
                f" WHERE user_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            found.update(r[0] for r in rows)
        return found

    async def users_with_any_rules(self, limit: int) -> set[str]:
        """Up to ``limit`` users with any stored row (the push evaluator reads them once per
        batch when there are few)."""
        rows = await self.db.fetchall("SELECT DISTINCT user_id FROM push_rules LIMIT ?", limit)
        return {r[0] for r in rows}

    async def get_rules(self, user_id: str) -> list[StoredRule]:
        """Every row of the user's, user rules in priority order (highest first)."""
        rows = await self.db.indexed.fetchall(
            "SELECT kind, rule_id, priority, conditions, pattern, actions, enabled"
            " FROM push_rules WHERE user_id = ? ORDER BY kind, priority DESC, rule_id",
            user_id,
        )
        return [
            StoredRule(
                kind,
                rule_id,
                int(priority),
                _json_or_none(conditions),
                pattern,
                _json_or_none(actions),
                None if enabled is None else bool(enabled),
            )
            for kind, rule_id, priority, conditions, pattern, actions, enabled in rows
        ]

    async def add_rule(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        *,
        conditions: list[Any] | None,
        pattern: str | None,
        actions: list[Any],
        before: str | None = None,
        after: str | None = None,
    ) -> None:
        """Create or replace a user rule, placed just before/after another user rule of the
        kind, or first (highest priority) otherwise. Raises :class:`UnknownAnchorError`."""
        await self.db.run_in_transaction(
            "add_push_rule",
            self._add_rule_txn,
            user_id,
            kind,
            rule_id,
            conditions,
            pattern,
            actions,
            before,
            after,
        )

    async def _add_rule_txn(
        self,
        txn: Transaction,
        user_id: str,
        kind: str,
        rule_id: str,
        conditions: list[Any] | None,
        pattern: str | None,
        actions: list[Any],
        before: str | None,
        after: str | None,
    ) -> None:
        rows = await txn.fetchall(
            "SELECT rule_id, enabled FROM push_rules WHERE user_id = ? AND kind = ?"
            " AND rule_id NOT LIKE '.%' ORDER BY priority DESC, rule_id",
            user_id,
            kind,
        )
        order = [r[0] for r in rows if r[0] != rule_id]
        enabled = next((r[1] for r in rows if r[0] == rule_id), None)
        anchor = before if before is not None else after
        if anchor is not None:
            if anchor not in order:
                raise UnknownAnchorError(anchor)
            index = order.index(anchor) + (0 if before is not None else 1)
        else:
            index = 0
        order.insert(index, rule_id)
        await txn.execute(
            "DELETE FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?",
            user_id,
            kind,
            rule_id,
        )
        await txn.execute(
            "INSERT INTO push_rules"
            " (user_id, kind, rule_id, priority, conditions, pattern, actions, enabled)"
            " VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
            user_id,
            kind,
            rule_id,
            None if conditions is None else canonical_json_text(conditions),
            pattern,
            canonical_json_text(actions),
            True if enabled is None else bool(enabled),
        )
        # Renumber the kind: lists are short, and dense priorities keep the order unambiguous.
        for position, rid in enumerate(order):
            await txn.execute(
                "UPDATE push_rules SET priority = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
                len(order) - position,
                user_id,
                kind,
                rid,
            )
        await self.account_data.touch_push_rules_txn(txn, user_id)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> bool:
        """Delete a user rule; False if there was none."""

        async def run(txn: Transaction) -> bool:
            deleted = await txn.execute(
                "DELETE FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?",
                user_id,
                kind,
                rule_id,
            )
            if deleted:
                await self.account_data.touch_push_rules_txn(txn, user_id)
            return bool(deleted)

        return await self.db.run_in_transaction("delete_push_rule", run)

    async def set_attribute(
        self,
        user_id: str,
        kind: str,
        rule_id: str,
        *,
        enabled: bool | None = None,
        actions: list[Any] | None = None,
    ) -> None:
        """Set ``enabled`` and/or ``actions`` of a rule (the caller checked it exists). For a
        server-default rule this writes (or updates) the user's override row."""

        async def run(txn: Transaction) -> None:
            await txn.execute(
                "INSERT INTO push_rules (user_id, kind, rule_id, priority, actions, enabled)"
                " VALUES (?, ?, ?, 0, NULL, NULL) ON CONFLICT (user_id, kind, rule_id) DO NOTHING",
                user_id,
                kind,
                rule_id,
            )
            if enabled is not None:
                await txn.execute(
                    "UPDATE push_rules SET enabled = ?"
                    " WHERE user_id = ? AND kind = ? AND rule_id = ?",
                    enabled,
                    user_id,
                    kind,
                    rule_id,
                )
            if actions is not None:
                await txn.execute(
                    "UPDATE push_rules SET actions = ?"
                    " WHERE user_id = ? AND kind = ? AND rule_id = ?",
                    canonical_json_text(actions),
                    user_id,
                    kind,
                    rule_id,
                )
            await self.account_data.touch_push_rules_txn(txn, user_id)

        await self.db.run_in_transaction("set_push_rule_attribute", run)

    async def copy_room_rule_txn(
        self, txn: Transaction, user_id: str, old_room_id: str, new_room_id: str
    ) -> bool:
        """Give ``new_room_id`` the user's ``room`` rule for ``old_room_id`` (a room upgrade
        carries per-room notification settings over); False if there was none to copy."""
        row = await txn.fetchone(
            "SELECT priority, actions, enabled FROM push_rules"
            " WHERE user_id = ? AND kind = 'room' AND rule_id = ?",
            user_id,
            old_room_id,
        )
        if row is None:
            return False
        conditions = [{"kind": "event_match", "key": "room_id", "pattern": new_room_id}]
        await txn.execute(
            "INSERT INTO push_rules"
            " (user_id, kind, rule_id, priority, conditions, pattern, actions, enabled)"
            " VALUES (?, 'room', ?, ?, ?, NULL, ?, ?)"
            " ON CONFLICT (user_id, kind, rule_id) DO NOTHING",
            user_id,
            new_room_id,
            int(row[0]),
            canonical_json_text(conditions),
            row[1],
            row[2],
        )
        await self.account_data.touch_push_rules_txn(txn, user_id)
        return True
