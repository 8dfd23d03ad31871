"""Two Homeserver instances over one database, as two processes of one deployment would be:
named "a" and "b", the same server name and signing key. On PostgreSQL each has a connection
pool of its own on the test's schema (so their database locks really are two sessions'); on
SQLite, which one process serves alone, they share one store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from signedjson.key import generate_signing_key

from homeserver.app import Homeserver
from homeserver.storage import Store
from tests.conftest import OpenTestDatabase
from tests.harness import TickingClock, make_config


@asynccontextmanager
async def two_instances(
    db_engine: str, open_test_database: OpenTestDatabase, tmp_path: Path, **config: Any
) -> AsyncIterator[dict[str, Homeserver]]:
    first = Store(await open_test_database())
    second = first if db_engine == "sqlite" else Store(await open_test_database(migrate=False))
    key = generate_signing_key("a_test")
    made: dict[str, Homeserver] = {}
    for name, store in (("a", first), ("b", second)):
        hs_config = make_config(tmp_path, instance_name=name, **config)
        made[name] = Homeserver(hs_config, key, store, clock=TickingClock())
    try:
        yield made
    finally:
        for hs in made.values():
            await hs.leases.stop()
