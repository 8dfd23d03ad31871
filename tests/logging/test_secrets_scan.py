"""The secrets scan: after a workload on a real server with DEBUG logging, neither the database
(SQLite file, or every PostgreSQL table dumped as text) nor the log output holds a raw access
token, a password, or the server's private signing key; the logs hold no message body.

The number of hits is printed (``-s``) and must be 0.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
import yaml

from homeserver.crypto.key_storage import read_signing_key
from tests.conftest import POSTGRES_DSN, SKIP_POSTGRES
from tests.http_client import Client
from tests.real_clients.nio_helpers import RELAXED_LIMIT
from tests.real_clients.server_process import (
    free_port,
    generate_config,
    start_process,
    stop_process,
    wait_for_health,
)

SERVER_NAME = "scan.test"


def _debug_log_config(path: Path, log_file: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "formatters": {
                    "precise": {
                        "format": "%(asctime)s - %(name)s - %(levelname)s - %(request)s - "
                        "%(user)s - %(txn)s - %(message)s"
                    }
                },
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "filename": str(log_file),
                        "formatter": "precise",
                    }
                },
                "root": {"level": "DEBUG", "handlers": ["file"]},
            }
        )
    )
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and SKIP_POSTGRES:
        pytest.skip("!!! PostgreSQL secrets scan SKIPPED: HOMESERVER_TEST_SKIP_POSTGRES=1 !!!")
    return str(request.param)


@pytest.fixture
async def postgres_dsn(engine: str) -> AsyncIterator[str | None]:
    """A database of its own on the test PostgreSQL (C collation), dropped afterwards."""
    if engine != "postgres":
        yield None
        return
    name = f"secrets_scan_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    try:
        await admin.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    finally:
        await admin.close()
    parts = urlsplit(POSTGRES_DSN)
    yield urlunsplit(parts._replace(path="/" + name))
    admin = await asyncpg.connect(POSTGRES_DSN, timeout=10)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


def _needles(values: dict[str, str], seed: bytes) -> dict[str, bytes]:
    """What to look for, as bytes: each secret as text and as hex (bytea dumps), and the seed
    in every encoding a key may be written in."""
    found: dict[str, bytes] = {}
    for label, value in values.items():
        found[label] = value.encode()
        found[f"{label} (hex)"] = value.encode().hex().encode()
    for label, encoded in {
        "seed base64": base64.b64encode(seed),
        "seed urlsafe base64": base64.urlsafe_b64encode(seed),
    }.items():
        found[label] = encoded
        found[f"{label} unpadded"] = encoded.rstrip(b"=")
    found["seed raw"] = seed
    found["seed hex"] = seed.hex().encode()
    return found


def _count(blobs: dict[str, bytes], needles: dict[str, bytes]) -> dict[str, int]:
    hits: dict[str, int] = {}
    for where, blob in blobs.items():
        for label, needle in needles.items():
            n = blob.count(needle)
            if n:
                hits[f"{label} in {where}"] = n
    return hits


async def _dump_postgres(dsn: str) -> bytes:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        assert tables, "no tables: the server did not use this database"
        parts: list[str] = []
        for schema, table in tables:
            rows = await conn.fetch(f'SELECT t::text FROM "{schema}"."{table}" t')
            parts.extend(row[0] for row in rows)
        return "\n".join(parts).encode()
    finally:
        await conn.close()


async def _workload(client: Client, password: str, new_password: str, marker: str) -> list[str]:
    """Everything that handles a secret; returns the access tokens it was given."""
    _, token = await client.register("alice", password)
    second = await client.login("alice", password)
    await client.register("bob", password + "-bob")
    status, _ = await client.call("GET", "/account/whoami", params={"access_token": second})
    assert status == 200
    status, room = await client.call(
        "POST",
        "/createRoom",
        token,
        json={"room_version": "10", "name": "scan room", "invite": ["@bob:" + SERVER_NAME]},
    )
    assert status == 200, room
    room_id = room["room_id"]
    for n in range(3):
        status, sent = await client.call(
            "PUT",
            f"/rooms/{room_id}/send/m.room.message/t{n}",
            token,
            json={"msgtype": "m.text", "body": f"{marker} number {n}"},
        )
        assert status == 200, sent
    status, _ = await client.call(
        "PUT", f"/rooms/{room_id}/state/m.room.topic", token, json={"topic": marker + " topic"}
    )
    assert status == 200
    status, upgraded = await client.call(
        "POST", f"/rooms/{room_id}/upgrade", token, json={"new_version": "11"}
    )
    assert status == 200, upgraded
    status, _ = await client.call("GET", "/sync", params={"access_token": token, "timeout": "0"})
    assert status == 200
    # A wrong password, an unknown token in both places, a malformed login body.
    wrong = await client.call(
        "POST",
        "/login",
        json={"type": "m.login.password", "user": "alice", "password": "wrong-" + password},
    )
    assert wrong[0] == 403
    bogus = "syt_" + secrets.token_urlsafe(32)
    assert (await client.call("GET", "/account/whoami", bogus))[0] == 401
    assert (await client.call("GET", "/sync", params={"access_token": bogus}))[0] == 401
    assert (await client.call("POST", "/login", json={"password": password}))[0] == 400
    # Change the password (UIA with the old one).
    body: dict[str, object] = {"new_password": new_password, "logout_devices": False}
    status, answer = await client.call("POST", "/account/password", token, json=body)
    if status == 401:
        body["auth"] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": password,
            "session": answer.get("session"),
        }
        status, answer = await client.call("POST", "/account/password", token, json=body)
    assert status == 200, answer
    third = await client.login("alice", new_password)
    # The federation key server (public keys only).
    status, keys = await client.call("GET", "/_matrix/key/v2/server")
    assert status == 200 and keys["server_name"] == SERVER_NAME
    assert (await client.call("POST", "/logout", second))[0] == 200
    return [token, second, third, bogus]


async def test_no_secret_in_database_or_logs(
    engine: str, postgres_dsn: str | None, tmp_path: Path
) -> None:
    workdir = tmp_path
    port = free_port()
    debug_log = workdir / "debug.log"
    overrides: dict[str, object] = {
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "rc_room_creation": RELAXED_LIMIT,
        "rc_message": RELAXED_LIMIT,
        "rc_registration": RELAXED_LIMIT,
        "rc_login": RELAXED_LIMIT,
        "log_config": str(_debug_log_config(workdir / "log_config.yaml", debug_log)),
    }
    if postgres_dsn is not None:
        overrides["database"] = {"name": "psycopg2", "args": {"dsn": postgres_dsn, "cp_min": 1}}
    config_path = generate_config(workdir, SERVER_NAME, port, overrides)
    stderr_log = workdir / "server.log"
    process = start_process(config_path, stderr_log)
    password = "pw-" + secrets.token_urlsafe(16)
    new_password = "pw2-" + secrets.token_urlsafe(16)
    marker = "BODY-" + secrets.token_hex(8)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", process)
        async with aiohttp.ClientSession() as session:
            tokens = await _workload(
                Client(session, f"http://127.0.0.1:{port}"), password, new_password, marker
            )
    finally:
        stop_process(process)

    config = yaml.safe_load(config_path.read_text())
    signing_key = read_signing_key(
        workdir / config["signing_key_path"], workdir / config["secrets_key_path"], {}
    )
    seed = bytes(signing_key)
    secrets_by_label = {
        "password": password,
        "new password": new_password,
        "wrong password": "wrong-" + password,
        **{f"access token {n}": t for n, t in enumerate(tokens)},
    }
    needles = _needles(secrets_by_label, seed)

    logs = {"debug log": debug_log.read_bytes(), "stderr": stderr_log.read_bytes()}
    assert len(logs["debug log"]) > 10_000, "DEBUG logging did not reach the file"
    assert b"GET-" in logs["debug log"] and b"upgrade_room" in logs["debug log"]
    stores: dict[str, bytes] = {}
    if postgres_dsn is None:
        data = workdir / "data"
        for path in sorted(data.iterdir()):
            if path.name.startswith("homeserver.db"):
                stores[path.name] = path.read_bytes()
        assert "homeserver.db" in stores
    else:
        stores["postgres tables"] = await _dump_postgres(postgres_dsn)
    # The scan can find things: the message bodies ARE in the database.
    assert _count(stores, {"body": marker.encode()})

    hits = _count({**logs, **stores}, needles)
    body_hits = _count(logs, {"message body": marker.encode()})
    total = sum(hits.values()) + sum(body_hits.values())
    print(
        f"\nsecrets scan ({engine}): {len(needles)} needles over "
        f"{sum(len(b) for b in {**logs, **stores}.values())} bytes "
        f"(logs {sum(len(b) for b in logs.values())}): {total} hits"
    )
    assert not hits, hits
    assert not body_hits, body_hits
