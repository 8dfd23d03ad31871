"""Storage: one async Database over SQLite (aiosqlite) or PostgreSQL (asyncpg), versioned
migrations, and one store per area behind the :class:`Store` facade."""

from homeserver.storage.database import Database, DatabaseSettings, Transaction
from homeserver.storage.factory import open_database
from homeserver.storage.migrate import apply_migrations
from homeserver.storage.persist import PersistedEvent, PersistResult, ResolvedState, StateBefore
from homeserver.storage.rooms import NewRoom, RoomRecord
from homeserver.storage.state import StateMap
from homeserver.storage.store import Store

__all__ = [
    "Database",
    "DatabaseSettings",
    "NewRoom",
    "PersistResult",
    "PersistedEvent",
    "ResolvedState",
    "RoomRecord",
    "StateBefore",
    "StateMap",
    "Store",
    "Transaction",
    "apply_migrations",
    "open_database",
]
