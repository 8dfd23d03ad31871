"""Shared by the suites: run metadata, opening a throw-away database on each engine, summaries."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from homeserver.storage import Store, apply_migrations
from homeserver.storage.factory import open_postgres, open_sqlite

ENGINES = ("sqlite", "postgres")
DEFAULT_POSTGRES_DSN = os.environ.get(
    "HOMESERVER_BENCH_POSTGRES_DSN",
    os.environ.get("HOMESERVER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip() or None
    if commit is not None:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if dirty.returncode == 0 and dirty.stdout.strip():
            commit += "-dirty"
    return commit


def run_metadata() -> dict[str, Any]:
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git_commit(),
        "machine": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
    }


def parse_engines(value: str) -> list[str]:
    engines = [e.strip() for e in value.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise ValueError(f"engines must be a comma-separated subset of {ENGINES}, got {value!r}")
    return engines


async def postgres_unreachable(dsn: str) -> str | None:
    """None if PostgreSQL at ``dsn`` answers, else why not."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {dsn} unreachable: {exc!r}"
    await conn.close()
    return None


async def measure_engines(
    args: Any, measure: Callable[[Any, str], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """``measure(args, engine)`` for each of ``args.engines``; an unreachable PostgreSQL is
    recorded as skipped (with its reason) rather than failing the whole run."""
    results: dict[str, Any] = {}
    for engine in args.engines:
        if engine == "postgres":
            reason = await postgres_unreachable(args.postgres_dsn)
            if reason:
                results[engine] = {"skipped": reason}
                continue
        results[engine] = await measure(args, engine)
    return results


@asynccontextmanager
async def throwaway_store(engine: str, postgres_dsn: str) -> AsyncIterator[Store]:
    """A migrated, empty store: SQLite in a temporary directory, or PostgreSQL in a fresh
    schema that is dropped afterwards."""
    if engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="homeserver-bench-") as tmp:
            db = await open_sqlite(Path(tmp) / "bench.db")
            try:
                await apply_migrations(db)
                yield Store(db)
            finally:
                await db.close()
        return
    schema = f"bench_{uuid.uuid4().hex}"
    db = await open_postgres(postgres_dsn, 1, 4, schema=schema)
    try:
        await apply_migrations(db)
        yield Store(db)
    finally:
        await db.close()
        admin = await asyncpg.connect(postgres_dsn, timeout=10)
        try:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await admin.close()


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def latency_summary(samples: Sequence[float]) -> dict[str, float]:
    """Median, p90, min and max of ``samples`` (seconds), in milliseconds."""
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {
        "median_ms": ms(statistics.median(ordered)),
        "p90_ms": ms(p90),
        "min_ms": ms(ordered[0]),
        "max_ms": ms(ordered[-1]),
    }


def rate(count: int, seconds: float) -> float:
    return round(count / max(seconds, 1e-9), 1)
