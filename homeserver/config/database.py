"""``database``: SQLite (``name: sqlite3``) or PostgreSQL (``name: postgresql`` or ``psycopg2``).

For PostgreSQL, ``args`` holds libpq keywords (``user``, ``password``, ``host``, ``port``,
``database``/``dbname``, ``sslmode`` …) or one ``dsn``, plus the pool sizes ``cp_min`` and
``cp_max`` — the shape a Synapse config already has, so it can be reused as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote, urlencode

from homeserver.config._reader import Reader

KEYS = frozenset({"database"})

SQLITE_NAMES = frozenset({"sqlite3", "sqlite"})
POSTGRES_NAMES = frozenset({"postgresql", "postgres", "psycopg2", "asyncpg"})
DEFAULT_SQLITE_FILE = "homeserver.db"
DEFAULT_CP_MIN = 5
DEFAULT_CP_MAX = 10

# libpq keywords that are part of the URI proper; the rest go into its query string.
_URI_KEYWORDS = frozenset({"user", "password", "host", "port", "database", "dbname"})
_SECRET_KEYWORDS = frozenset({"password", "dsn"})


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    engine: Literal["sqlite", "postgresql"]
    #: The ``name`` as written (``sqlite3``, ``psycopg2`` …), for messages.
    name: str
    #: SQLite only: the database file (or ``:memory:``).
    sqlite_path: Path | str | None = None
    #: PostgreSQL only: a ``postgresql://`` DSN built from ``args`` (or ``args.dsn`` itself).
    #: It may hold the password, so it is kept out of ``repr``.
    postgres_dsn: str | None = field(default=None, repr=False)
    cp_min: int = DEFAULT_CP_MIN
    cp_max: int = DEFAULT_CP_MAX
    #: Run on a PostgreSQL database whose collation is not C (Synapse's flag of the same name).
    allow_unsafe_locale: bool = False
    #: The ``args`` as written, secrets removed (for logs and diagnostics).
    public_args: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def default_database(config_dir: Path) -> DatabaseConfig:
    return DatabaseConfig(
        engine="sqlite", name="sqlite3", sqlite_path=config_dir / DEFAULT_SQLITE_FILE
    )


def _postgres_dsn(args: Reader) -> str:
    dsn = args.string("dsn", None)
    keywords = {
        key: value
        for key, value in args.data.items()
        if key not in ("dsn", "cp_min", "cp_max") and value is not None
    }
    for key, value in keywords.items():
        args.raw(key)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise args.error(key, "must be a string or a number")
    if dsn is not None:
        if keywords:
            raise args.error("dsn", "cannot be combined with other connection keywords")
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise args.error("dsn", "must be a postgresql:// URI")
        return dsn
    if "database" in keywords and "dbname" in keywords:
        raise args.error("dbname", "give either database or dbname, not both")
    if "port" in keywords:
        args.integer("port", minimum=1, maximum=65535)

    database = str(keywords.get("database", keywords.get("dbname", "")))
    user = keywords.get("user")
    password = keywords.get("password")
    host = str(keywords.get("host", ""))
    port = keywords.get("port")
    query = {k: str(v) for k, v in keywords.items() if k not in _URI_KEYWORDS}
    # A host that is a directory is a Unix socket; it cannot sit in the URI's authority part.
    if host.startswith("/"):
        query["host"] = host
        host = ""
    userinfo = ""
    if user is not None:
        userinfo = quote(str(user), safe="")
        if password is not None:
            userinfo += ":" + quote(str(password), safe="")
        userinfo += "@"
    netloc = userinfo + (f"[{host}]" if ":" in host else host)
    if port is not None:
        netloc += f":{port}"
    dsn = f"postgresql://{netloc}/{quote(database, safe='')}"
    if query:
        dsn += "?" + urlencode(query)
    return dsn


def parse_database(reader: Reader) -> DatabaseConfig:
    if not reader.has("database"):
        reader.raw("database")
        return default_database(reader.config_dir)
    section = reader.sub("database")
    name = section.string("name", "sqlite3")
    args = section.sub("args")
    allow_unsafe_locale = section.boolean("allow_unsafe_locale", False)
    public_args = MappingProxyType(
        {k: v for k, v in args.data.items() if k not in _SECRET_KEYWORDS}
    )

    if name in SQLITE_NAMES:
        raw = args.string("database", DEFAULT_SQLITE_FILE)
        if not raw:
            raise args.error("database", "must be a file path")
        sqlite_path: Path | str = (
            raw if raw == ":memory:" else args.path_value("database") or Path(raw)
        )
        args.warn_unknown(frozenset({"cp_min", "cp_max", "check_same_thread"}))
        section.warn_unknown(frozenset({"txn_limit"}))
        return DatabaseConfig(
            engine="sqlite",
            name=name,
            sqlite_path=sqlite_path,
            allow_unsafe_locale=allow_unsafe_locale,
            public_args=public_args,
        )

    if name not in POSTGRES_NAMES:
        raise section.error("name", f"must be sqlite3, postgresql or psycopg2, not {name!r}")
    cp_min = args.integer("cp_min", DEFAULT_CP_MIN, minimum=1)
    cp_max = args.integer("cp_max", max(DEFAULT_CP_MAX, cp_min), minimum=1)
    if cp_max < cp_min:
        raise args.error("cp_max", f"must be at least cp_min ({cp_min}), not {cp_max}")
    dsn = _postgres_dsn(args)
    section.warn_unknown(frozenset({"txn_limit"}))
    return DatabaseConfig(
        engine="postgresql",
        name=name,
        postgres_dsn=dsn,
        cp_min=cp_min,
        cp_max=cp_max,
        allow_unsafe_locale=allow_unsafe_locale,
        public_args=public_args,
    )
