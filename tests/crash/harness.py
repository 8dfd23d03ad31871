"""Real ``homeserver run`` processes for crash and cross-process tests.

A :class:`CrashServer` owns one server's working directory and database (a SQLite file, or a
fresh PostgreSQL database created for the test and dropped afterwards). It starts the server —
optionally with ``HOMESERVER_FAULT_POINT`` set, so the process SIGKILLs itself at that named
step — talks to it over HTTP with aiohttp, and reads the database directly (``sqlite3`` /
``asyncpg``) to check what a crash left behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from homeserver.faults import ENV_VAR as FAULT_ENV_VAR
from tests.dbtemplate import (
    copy_migrated_sqlite,
    create_migrated_postgres,
    database_dsn,
    drop_postgres_database,
)
from tests.http_client import Client
from tests.real_clients.server_process import (
    config_with_port,
    free_port,
    generate_config,
    start_process,
    stop_process,
    wait_for_health,
)

POSTGRES_DSN = os.environ.get(
    "HOMESERVER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
SKIP_POSTGRES = os.environ.get("HOMESERVER_TEST_SKIP_POSTGRES") == "1"
SERVER_NAME = "crash.test"
UNLIMITED = {"per_second": 100000, "burst_count": 100000}
BASE_CONFIG: dict[str, Any] = {
    "enable_registration": True,
    "enable_registration_without_verification": True,
    "rc_room_creation": UNLIMITED,
    "rc_message": UNLIMITED,
    "rc_registration": UNLIMITED,
    "rc_login": UNLIMITED,
    "rc_joins": {"local": UNLIMITED, "remote": UNLIMITED},
    "rc_invites": UNLIMITED,
    "rc_to_device": UNLIMITED,
}
ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SIGKILLED = -9


def skip_if_postgres_disabled(engine: str) -> None:
    if engine == "postgres" and SKIP_POSTGRES:
        pytest.skip(
            f"!!! PostgreSQL tests SKIPPED: HOMESERVER_TEST_SKIP_POSTGRES=1 ({POSTGRES_DSN}) !!!"
        )


class DatabaseProbe:
    """Read-only SQL against the server's database, ``?`` placeholders on both engines."""

    def __init__(self, engine: str, sqlite_path: Path | None, postgres_dsn: str | None) -> None:
        self.engine = engine
        self.sqlite_path = sqlite_path
        self.postgres_dsn = postgres_dsn

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.engine == "sqlite":
            assert self.sqlite_path is not None
            conn = sqlite3.connect(self.sqlite_path, timeout=10)
            try:
                return [tuple(r) for r in conn.execute(sql, args).fetchall()]
            finally:
                conn.close()
        assert self.postgres_dsn is not None
        parts = sql.split("?")
        pg_sql = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
        conn = await asyncpg.connect(self.postgres_dsn, timeout=10)
        try:
            return [tuple(r) for r in await conn.fetch(pg_sql, *args)]
        finally:
            await conn.close()

    async def value(self, sql: str, *args: Any) -> Any:
        rows = await self.rows(sql, *args)
        return rows[0][0] if rows else None

    async def room_ids(self, table: str) -> set[str]:
        return {r[0] for r in await self.rows(f"SELECT DISTINCT room_id FROM {table}")}

    async def room_status(self, room_id: str) -> tuple[str, str | None] | None:
        rows = await self.rows(
            "SELECT status, replacement_room_id FROM rooms WHERE room_id = ?", room_id
        )
        return (rows[0][0], rows[0][1]) if rows else None

    async def successor_rooms(self, old_room_id: str) -> list[str]:
        """Rooms whose create event names ``old_room_id`` as predecessor."""
        found = []
        for room_id, raw in await self.rows(
            "SELECT room_id, json FROM events WHERE type = 'm.room.create'"
        ):
            predecessor = json.loads(raw).get("content", {}).get("predecessor") or {}
            if predecessor.get("room_id") == old_room_id:
                found.append(room_id)
        return found

    async def upgrading_rooms(self) -> list[str]:
        rows = await self.rows("SELECT room_id FROM rooms WHERE status = 'upgrading'")
        return [r[0] for r in rows]

    async def orphans(self) -> dict[str, set[str]]:
        """Room IDs found in room-scoped tables without a ``rooms`` row (half-written rooms)."""
        rooms = await self.room_ids("rooms")
        found = {}
        for table in (
            "events",
            "current_state_events",
            "state_groups",
            "event_forward_extremities",
            "room_aliases",
            "event_edges",
        ):
            extra = await self.room_ids(table) - rooms
            if extra:
                found[table] = extra
        return found


class CrashServer:
    """One homeserver (config, data, database) that can be started, killed and restarted."""

    def __init__(self, workdir: Path, engine: str, probe: DatabaseProbe, config_path: Path):
        self.workdir = workdir
        self.engine = engine
        self.probe = probe
        self.config_path = config_path
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.base_url = ""
        self._extra: list[subprocess.Popen[bytes]] = []

    def start(self, fault: str | None = None) -> str:
        """Start (or restart) the server, optionally with a fault point armed; its base URL."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.port = free_port()
        config_with_port(self.config_path, self.port, self.config_path)
        # Always set (empty when unarmed): a value in the runner's environment must not leak in.
        env = {FAULT_ENV_VAR: fault or ""}
        self.process = start_process(self.config_path, self.log_path, env)
        self.base_url = f"http://127.0.0.1:{self.port}"
        wait_for_health(self.base_url, self.process)
        return self.base_url

    def start_second_process(self) -> str:
        """Another ``homeserver run`` on the same config and database, other port."""
        port = free_port()
        path = config_with_port(self.config_path, port, self.workdir / f"second-{port}.yaml")
        process = start_process(path, self.workdir / f"second-{port}.log", {FAULT_ENV_VAR: ""})
        self._extra.append(process)
        base_url = f"http://127.0.0.1:{port}"
        wait_for_health(base_url, process)
        return base_url

    async def wait_killed(self, timeout: float = 30) -> int:
        """Wait for the armed process to die; its return code."""
        assert self.process is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.process.wait, timeout)

    def stop(self) -> None:
        for process in [self.process, *self._extra]:
            if process is not None:
                stop_process(process)
        self._extra.clear()

    def log(self) -> str:
        """Everything the server's processes wrote (the first process's log last)."""
        paths = [*sorted(self.workdir.glob("second-*.log")), self.log_path]
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())


@asynccontextmanager
async def crash_server(tmp_path: Path, engine: str) -> AsyncIterator[CrashServer]:
    """A configured (not started) server on ``engine`` with a database of its own."""
    skip_if_postgres_disabled(engine)
    # Already migrated (a copy of this process's template, tests/dbtemplate.py): the server
    # finds nothing to apply on start, as after any earlier start.
    database_name: str | None = None
    if engine == "sqlite":
        sqlite_path = tmp_path / "crash.db"
        await copy_migrated_sqlite(sqlite_path)
        database: dict[str, Any] = {"name": "sqlite3", "args": {"database": str(sqlite_path)}}
        probe = DatabaseProbe("sqlite", sqlite_path, None)
    else:
        database_name = await create_migrated_postgres()
        dsn = database_dsn(database_name)
        database = {"name": "psycopg2", "args": {"dsn": dsn, "cp_min": 2, "cp_max": 10}}
        probe = DatabaseProbe("postgres", None, dsn)
    config_path = generate_config(
        tmp_path, SERVER_NAME, free_port(), {**BASE_CONFIG, "database": database}
    )
    server = CrashServer(tmp_path, engine, probe, config_path)
    try:
        yield server
    finally:
        server.stop()
        if database_name is not None:
            await drop_postgres_database(database_name)


async def crashing_request(client: Client, method: str, path: str, token: str, body: Any) -> None:
    """Send a request the server is expected to die in the middle of."""
    try:
        status, data = await client.call(method, path, token, body)
    except (TimeoutError, aiohttp.ClientError):
        return
    raise AssertionError(f"the server answered instead of crashing: {status} {data}")
