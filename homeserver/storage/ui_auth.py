"""User-interactive auth sessions and shared-secret registration nonces.

Both are short-lived and kept in the database rather than in memory, so any process of a
multi-process deployment can continue what another one started."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database


@dataclass(frozen=True, slots=True)
class UIAuthSession:
    session_id: str
    operation: str
    user_id: str | None
    created_ts: int


class UIAuthStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- user-interactive auth sessions -------------------------------------------------
    async def create_session(
        self, session_id: str, operation: str, user_id: str | None, *, now: int, expired_before: int
    ) -> None:
        """Store a new session, dropping the ones created before ``expired_before``."""
        async with self.db.transaction("create_ui_auth_session") as txn:
            await txn.execute("DELETE FROM ui_auth_sessions WHERE created_ts < ?", expired_before)
            await txn.execute(
                "INSERT INTO ui_auth_sessions (session_id, operation, user_id, created_ts)"
                " VALUES (?, ?, ?, ?)",
                session_id,
                operation,
                user_id,
                now,
            )

    async def get_session(self, session_id: str) -> UIAuthSession | None:
        row = await self.db.fetchone(
            "SELECT session_id, operation, user_id, created_ts FROM ui_auth_sessions"
            " WHERE session_id = ?",
            session_id,
        )
        return None if row is None else UIAuthSession(row[0], row[1], row[2], int(row[3]))

    async def delete_session(self, session_id: str) -> None:
        async with self.db.transaction("delete_ui_auth_session") as txn:
            await txn.execute("DELETE FROM ui_auth_sessions WHERE session_id = ?", session_id)

    # --- shared-secret registration nonces ----------------------------------------------
    async def add_nonce(
        self, nonce: str, *, now: int, expired_before: int, most: int | None = None
    ) -> bool:
        """Store ``nonce`` after dropping the expired ones; False (nothing stored) when
        ``most`` unexpired nonces are already outstanding."""
        async with self.db.transaction("add_registration_nonce") as txn:
            await txn.execute(
                "DELETE FROM registration_nonces WHERE created_ts < ?", expired_before
            )
            if most is not None:
                outstanding = await txn.fetchval("SELECT COUNT(*) FROM registration_nonces")
                if int(outstanding) >= most:
                    return False
            await txn.execute(
                "INSERT INTO registration_nonces (nonce, created_ts) VALUES (?, ?)", nonce, now
            )
        return True

    async def take_nonce(self, nonce: str, *, expired_before: int) -> bool:
        """Consume ``nonce``: True if it existed and had not expired. Either way it is gone, so
        a nonce is good for exactly one attempt, even when two requests race."""
        async with self.db.transaction("take_registration_nonce") as txn:
            created = await txn.fetchval(
                "SELECT created_ts FROM registration_nonces WHERE nonce = ?", nonce
            )
            deleted = await txn.execute("DELETE FROM registration_nonces WHERE nonce = ?", nonce)
        return deleted == 1 and created is not None and int(created) >= expired_before
