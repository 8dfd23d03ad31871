"""Opening a database: the configured engine, brought up to date by the migrations.

Kept out of ``database.py`` so the engine-independent base class knows no engine; the engines
import the base, and only this module imports the engines.
"""

from __future__ import annotations

from pathlib import Path

from homeserver.storage.database import Database, DatabaseSettings
from homeserver.storage.engine_postgres import PostgresDatabase
from homeserver.storage.engine_sqlite import SqliteDatabase
from homeserver.storage.migrate import apply_migrations


async def open_sqlite(path: str | Path, *, readers: int = 3, exclusive: bool = False) -> Database:
    db = SqliteDatabase(str(path), readers, exclusive=exclusive)
    try:
        await db._open()
    except BaseException:
        await db.close()
        raise
    return db


async def open_postgres(
    dsn: str, min_size: int = 5, max_size: int = 10, schema: str | None = None
) -> Database:
    db = PostgresDatabase(dsn, min_size, max_size, schema)
    await db._open()
    return db


async def open_database(settings: DatabaseSettings, *, migrate: bool = True) -> Database:
    """Open the configured engine and (by default) bring its schema up to date."""
    db: Database
    if settings.engine in ("sqlite", "sqlite3"):
        db = await open_sqlite(
            settings.path, readers=settings.sqlite_readers, exclusive=settings.exclusive
        )
    elif settings.engine in ("postgres", "postgresql"):
        db = await open_postgres(settings.dsn, settings.cp_min, settings.cp_max, settings.schema)
    else:
        raise ValueError(f"unknown database engine {settings.engine!r}")
    if migrate:
        try:
            await apply_migrations(db)
        except BaseException:
            await db.close()
            raise
    return db
