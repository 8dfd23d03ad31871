"""Registration tokens (Synapse's ``registration_tokens``, migration 031): the admin API's rows
and the counting done by the ``m.login.registration_token`` stage (``pending`` when a session
passes the stage, moved to ``completed`` when its registration finishes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Transaction


@dataclass(frozen=True, slots=True)
class RegistrationToken:
    token: str
    uses_allowed: int | None
    pending: int
    completed: int
    expiry_time: int | None

    def valid_at(self, now: int) -> bool:
        """Synapse's rule: unexpired, and uses left once pending ones are counted."""
        if self.expiry_time is not None and self.expiry_time < now:
            return False
        return self.uses_allowed is None or self.pending + self.completed < self.uses_allowed


_COLUMNS = "token, uses_allowed, pending, completed, expiry_time"


def _token(r: Any) -> RegistrationToken:
    return RegistrationToken(
        r[0],
        None if r[1] is None else int(r[1]),
        int(r[2]),
        int(r[3]),
        None if r[4] is None else int(r[4]),
    )


class RegistrationTokensStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_tokens(self) -> list[RegistrationToken]:
        rows = await self.db.fetchall(f"SELECT {_COLUMNS} FROM registration_tokens ORDER BY token")
        return [_token(r) for r in rows]

    async def get(self, token: str) -> RegistrationToken | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM registration_tokens WHERE token = ?", token
        )
        return None if row is None else _token(row)

    async def create(self, token: str, uses_allowed: int | None, expiry_time: int | None) -> bool:
        """False if the token exists already."""
        async with self.db.transaction("create_registration_token") as txn:
            changed = await txn.execute(
                "INSERT INTO registration_tokens (token, uses_allowed, expiry_time)"
                " VALUES (?, ?, ?) ON CONFLICT (token) DO NOTHING",
                token,
                uses_allowed,
                expiry_time,
            )
        return changed == 1

    async def update(self, token: str, changes: dict[str, int | None]) -> RegistrationToken | None:
        """Set ``uses_allowed`` and/or ``expiry_time``; None if there is no such token."""
        async with self.db.transaction("update_registration_token") as txn:
            for column in ("uses_allowed", "expiry_time"):
                if column in changes:
                    await txn.execute(
                        f"UPDATE registration_tokens SET {column} = ? WHERE token = ?",
                        changes[column],
                        token,
                    )
            row = await txn.fetchone(
                f"SELECT {_COLUMNS} FROM registration_tokens WHERE token = ?", token
            )
        return None if row is None else _token(row)

    async def delete(self, token: str) -> bool:
        async with self.db.transaction("delete_registration_token") as txn:
            changed = await txn.execute("DELETE FROM registration_tokens WHERE token = ?", token)
        return changed == 1

    async def use_in_session(self, session_id: str, token: str, now: int) -> bool:
        """The stage: if ``token`` is valid now, count one pending use for ``session_id`` (once
        per session); False if it is not valid."""

        async def run(txn: Transaction) -> bool:
            used = await txn.fetchval(
                "SELECT token FROM registration_token_sessions WHERE session_id = ?", session_id
            )
            if used is not None:
                return bool(used == token)
            if not await txn.lock_row("registration_tokens", "token", token):
                return False
            row = await txn.fetchone(
                f"SELECT {_COLUMNS} FROM registration_tokens WHERE token = ?", token
            )
            if row is None or not _token(row).valid_at(now):
                return False
            await txn.execute(
                "UPDATE registration_tokens SET pending = pending + 1 WHERE token = ?", token
            )
            await txn.execute(
                "INSERT INTO registration_token_sessions (session_id, token) VALUES (?, ?)",
                session_id,
                token,
            )
            return True

        return await self.db.run_in_transaction("use_registration_token", run)

    async def session_token(self, session_id: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT token FROM registration_token_sessions WHERE session_id = ?", session_id
        )
        return None if value is None else str(value)

    async def complete(self, session_id: str) -> None:
        """The session's registration finished: its pending use is now completed."""
        async with self.db.transaction("complete_registration_token") as txn:
            token = await txn.fetchval(
                "SELECT token FROM registration_token_sessions WHERE session_id = ?", session_id
            )
            if token is None:
                return
            await txn.execute(
                "UPDATE registration_tokens SET pending = pending - 1, completed = completed + 1"
                " WHERE token = ?",
                token,
            )
            await txn.execute(
                "DELETE FROM registration_token_sessions WHERE session_id = ?", session_id
            )
