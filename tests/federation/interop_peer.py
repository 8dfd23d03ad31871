"""OUR homeserver as a real ``homeserver run`` process set up to federate on loopback.

:class:`OurServer` has a TLS federation listener on ``fed_port`` (server name
``localhost:<fed_port>``) and a plain-HTTP client listener on ``client_port``, both fixed for its
life so a restart is the same server. Its database is a SQLite file in the working directory or a
PostgreSQL database of its own (created here, dropped by :meth:`OurServer.destroy`).
:func:`running_our_server` is the whole life in one block, for fixtures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dbtemplate import (
    copy_migrated_sqlite,
    create_migrated_postgres,
    database_dsn,
    drop_postgres_database,
)
from tests.federation.processes import stop_process_group
from tests.federation.tls_helpers import self_signed_cert
from tests.real_clients.server_process import (
    free_port,
    generate_config,
    server_env,
    wait_for_health,
)

_UNLIMITED = {"per_second": 100000, "burst_count": 100000}
#: Short federation retries (Synapse's key names; the sender reads them from ``federation:``), so
#: a peer that was down is retried within seconds.
FEDERATION_RETRY = {
    "destination_min_retry_interval": "1s",
    "destination_retry_multiplier": 2,
    "destination_max_retry_interval": "5s",
}


def interop_overrides(workdir: Path, fed_port: int, client_port: int) -> dict[str, Any]:
    cert_path, key_path = self_signed_cert(workdir / "tls")
    return {
        "listeners": [
            {
                "port": fed_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": True,
                "resources": [{"names": ["federation"]}],
            },
            {
                "port": client_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "resources": [{"names": ["client"]}],
            },
        ],
        "tls_certificate_path": str(cert_path),
        "tls_private_key_path": str(key_path),
        "federation_verify_certificates": False,
        "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
        "federation": dict(FEDERATION_RETRY),
        "rc_room_creation": _UNLIMITED,
        "rc_message": _UNLIMITED,
        "rc_registration": _UNLIMITED,
        "rc_login": _UNLIMITED,
        "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
        "rc_invites": _UNLIMITED,
        "rc_to_device": _UNLIMITED,
    }


class OurServer:
    """Our homeserver on ``engine``; :meth:`start` / :meth:`stop` any number of times."""

    def __init__(self, workdir: Path, engine: str) -> None:
        self.workdir = workdir
        self.engine = engine
        self.fed_port = free_port()
        self.client_port = free_port()
        self.server_name = f"localhost:{self.fed_port}"
        self.client_url = f"http://127.0.0.1:{self.client_port}"
        self.federation_url = f"https://127.0.0.1:{self.fed_port}"
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.config_path: Path | None = None
        self.registration_secret = ""
        self._pg_database: str | None = None

    async def create(self) -> None:
        """Write the config (and create the PostgreSQL database). The database starts out
        migrated (a copy of this process's template, tests/dbtemplate.py): the server finds
        nothing to apply."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.engine == "sqlite":
            await copy_migrated_sqlite(self.workdir / "homeserver.db")
            database: dict[str, Any] = {
                "name": "sqlite3",
                "args": {"database": str(self.workdir / "homeserver.db")},
            }
        else:
            self._pg_database = await create_migrated_postgres()
            dsn = database_dsn(self._pg_database)
            database = {"name": "psycopg2", "args": {"dsn": dsn, "cp_min": 2, "cp_max": 10}}
        overrides = interop_overrides(self.workdir, self.fed_port, self.client_port)
        overrides["database"] = database
        self.config_path = generate_config(self.workdir, self.server_name, self.fed_port, overrides)
        config = yaml.safe_load(self.config_path.read_text())
        self.registration_secret = config["registration_shared_secret"]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        assert self.config_path is not None, "create() first"
        assert not self.running, "already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "homeserver", "run", "--config-path", str(self.config_path)],
                env=server_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_health(self.client_url, self.process, timeout=60)
        except AssertionError as e:
            self.stop()
            raise AssertionError(f"{e}\n{self.log_tail()}") from None

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process_group(process, grace=30)

    async def destroy(self) -> None:
        """Stop, and drop the PostgreSQL database."""
        self.stop()
        if self._pg_database is not None:
            await drop_postgres_database(self._pg_database)
            self._pg_database = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 6000) -> str:
        return f"--- our server.log ---\n{self.log()[-chars:]}"


@asynccontextmanager
async def running_our_server(
    directory: Path, engine: str, config: dict[str, Any] | None = None
) -> AsyncIterator[OurServer]:
    """Our server on ``engine`` (top-level ``config`` keys set before it starts), serving
    until the block ends, then destroyed; a PostgreSQL run is skipped when PostgreSQL is."""
    if engine == "postgres" and os.environ.get("HOMESERVER_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("!!! PostgreSQL tests SKIPPED: HOMESERVER_TEST_SKIP_POSTGRES=1 !!!")
    server = OurServer(directory, engine)
    await server.create()
    assert server.config_path is not None
    if config:
        generated = yaml.safe_load(server.config_path.read_text())
        generated.update(config)
        server.config_path.write_text(yaml.safe_dump(generated))
    try:
        server.start()
        yield server
    finally:
        await server.destroy()
