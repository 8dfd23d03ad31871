"""Private files stay private whatever the umask: the data directory 0700, the SQLite database
with its -wal and -shm files and the key files 0600, after generate-config and after a first
start on a fresh data directory; looser modes of existing files are tightened at start-up."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from homeserver.app import start_homeserver
from homeserver.cli import main
from homeserver.config import HomeserverConfig
from homeserver.crypto.key_storage import SECRETS_KEY_ENV


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _umask_0022(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(SECRETS_KEY_ENV, raising=False)
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


async def _start_and_stop(config: HomeserverConfig) -> None:
    hs = await start_homeserver(config, environ={})
    try:
        # A write, so SQLite has made its -wal and -shm files.
        await hs.store.users.create_user("@a:localhost", None, created_ts=1)
        db = Path(str(config.database.sqlite_path))
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert path.exists(), path
            assert _mode(path) == 0o600, path
    finally:
        await hs.store.db.close()


async def test_generate_config_then_first_start(tmp_path: Path) -> None:
    config_path = tmp_path / "etc" / "homeserver.yaml"
    data = tmp_path / "data"
    args = ["generate-config", "--server-name", "localhost", "--config-path", str(config_path)]
    assert main([*args, "--data-dir", str(data)]) == 0
    config = HomeserverConfig.load(config_path)
    assert _mode(data) == 0o700
    for path in (config_path, config.keys.signing_key_path, config.keys.secrets_key_path):
        assert _mode(path) == 0o600, path
    await _start_and_stop(config)
    assert _mode(data) == 0o700


async def test_first_start_on_a_fresh_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    config = HomeserverConfig.parse(
        {
            "server_name": "localhost",
            "database": {"name": "sqlite3", "args": {"database": str(data / "homeserver.db")}},
            "signing_key_path": str(data / "keys" / "signing.key"),
            "secrets_key_path": str(data / "keys" / "secrets.key"),
        },
        tmp_path,
    )
    await _start_and_stop(config)
    assert _mode(data) == 0o700 and _mode(data / "keys") == 0o700
    for name in ("signing.key", "secrets.key"):
        assert _mode(data / "keys" / name) == 0o600


async def test_loose_existing_files_are_tightened_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config_path = tmp_path / "homeserver.yaml"
    args = ["generate-config", "--server-name", "localhost", "--config-path", str(config_path)]
    assert main(args) == 0
    config = HomeserverConfig.load(config_path)
    await _start_and_stop(config)
    db = Path(str(config.database.sqlite_path))
    loose = [db, config.keys.signing_key_path, config.keys.secrets_key_path]
    for path in loose:
        path.chmod(0o644)
    await _start_and_stop(config)
    for path in loose:
        assert _mode(path) == 0o600, path
    assert any("0644" in r.getMessage() and "0600" in r.getMessage() for r in caplog.records)
