"""The PostgreSQL locale check at start-up: the rule (pure) and a real database with an ICU
collation refused unless ``allow_unsafe_locale``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from homeserver.app import StartupError, start_homeserver
from homeserver.storage.postgres_locale import locale_problems
from tests.conftest import POSTGRES_DSN, SKIP_POSTGRES
from tests.harness import make_config


@pytest.mark.parametrize(
    ("encoding", "collate", "ctype", "provider", "provider_locale", "problems"),
    [
        ("UTF8", "C", "C", "c", None, 0),
        ("UTF8", "POSIX", "POSIX", "c", None, 0),
        ("UTF8", "C.UTF-8", "C.UTF-8", "c", None, 0),
        ("UTF8", "C.utf8", "C.utf8", "c", None, 0),
        ("UTF8", "en_US.UTF-8", "C", "c", None, 1),
        ("UTF8", "C", "en_US.UTF-8", "c", None, 1),
        ("SQL_ASCII", "C", "C", "c", None, 1),
        ("LATIN1", "de_DE", "de_DE", "c", None, 3),
        # ICU: the ICU locale orders text, whatever datcollate says.
        ("UTF8", "C.UTF-8", "C.UTF-8", "i", "en-US", 1),
        ("UTF8", "C.UTF-8", "C.UTF-8", "b", "C.UTF-8", 0),
        ("UTF8", "C", "C", "b", "C", 0),
    ],
)
def test_locale_rule(
    encoding: str,
    collate: str,
    ctype: str,
    provider: str,
    provider_locale: str | None,
    problems: int,
) -> None:
    found = locale_problems(
        encoding, collate, ctype, provider=provider, provider_locale=provider_locale
    )
    assert len(found) == problems, found


@pytest.fixture
async def icu_database() -> AsyncIterator[str]:
    """A fresh database collating with ICU's en-US rules; its DSN."""
    if SKIP_POSTGRES:
        pytest.skip("!!! PostgreSQL tests SKIPPED: HOMESERVER_TEST_SKIP_POSTGRES=1 !!!")
    name = f"locale_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_DSN)
    try:
        await admin.execute(
            f"CREATE DATABASE {name} LOCALE_PROVIDER icu ICU_LOCALE 'en-US' TEMPLATE template0"
        )
    finally:
        await admin.close()
    base, _, _ = POSTGRES_DSN.rpartition("/")
    yield f"{base}/{name}"
    admin = await asyncpg.connect(POSTGRES_DSN)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


def _config(tmp_path: Path, dsn: str, **database: object) -> object:
    return make_config(tmp_path, database={"name": "psycopg2", "args": {"dsn": dsn}, **database})


@pytest.mark.postgres
async def test_language_collation_refused_at_start(tmp_path: Path, icu_database: str) -> None:
    with pytest.raises(StartupError, match="ICU locale 'en-US'"):
        await start_homeserver(_config(tmp_path, icu_database))  # type: ignore[arg-type]


@pytest.mark.postgres
async def test_allow_unsafe_locale_starts_anyway(tmp_path: Path, icu_database: str) -> None:
    hs = await start_homeserver(
        _config(tmp_path, icu_database, allow_unsafe_locale=True)  # type: ignore[arg-type]
    )
    await hs.store.db.close()


@pytest.mark.postgres
async def test_the_test_database_passes(tmp_path: Path) -> None:
    if SKIP_POSTGRES:
        pytest.skip("!!! PostgreSQL tests SKIPPED: HOMESERVER_TEST_SKIP_POSTGRES=1 !!!")
    hs = await start_homeserver(_config(tmp_path, POSTGRES_DSN))  # type: ignore[arg-type]
    await hs.store.db.close()
