"""``homeserver register-user`` run as a real process against a generated config."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from homeserver.app import database_settings
from homeserver.config import HomeserverConfig
from homeserver.crypto.key_storage import SECRETS_KEY_ENV
from homeserver.crypto.passwords import verify_password
from homeserver.storage import Store, open_database


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != SECRETS_KEY_ENV}
    return subprocess.run(
        [sys.executable, "-m", "homeserver", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "homeserver.yaml"
    result = run_cli("generate-config", "--server-name", "cli.example", "--config-path", str(path))
    assert result.returncode == 0, result.stderr
    return path


def stored_user(config_path: Path, user_id: str):  # type: ignore[no-untyped-def]
    async def read():  # type: ignore[no-untyped-def]
        config = HomeserverConfig.load(config_path)
        db = await open_database(database_settings(config.database))
        try:
            store = Store(db)
            return await store.users.get_user(user_id), await store.profiles.get_profile(user_id)
        finally:
            await db.close()

    return asyncio.run(read())


def test_register_user_from_stdin(config_path: Path) -> None:
    result = run_cli(
        "register-user", "--config-path", str(config_path), "--user", "alice", stdin="pa ss\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "@alice:cli.example"
    user, profile = stored_user(config_path, "@alice:cli.example")
    assert user is not None and not user.admin
    assert user.password_hash != "pa ss" and verify_password(user.password_hash, "pa ss")
    assert profile.displayname == "alice"


def test_register_admin_from_password_file(config_path: Path, tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("secret\n")
    result = run_cli(
        "register-user",
        "--config-path",
        str(config_path),
        "--user",
        "@boss:cli.example",
        "--password-file",
        str(password_file),
        "--admin",
    )
    assert result.returncode == 0, result.stderr
    user, _ = stored_user(config_path, "@boss:cli.example")
    assert user is not None and user.admin and verify_password(user.password_hash, "secret")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--user", "alice"], "pw\n", "already exists"),
        (["--user", "Bad Name"], "pw\n", "invalid user"),
        (["--user", "@x:other.example"], "pw\n", "not a user of this server"),
        (["--user", "newbie"], "", "password is empty"),
        (["--user", "newbie", "--password-file", "/nonexistent/pw"], "", "cannot read"),
    ],
)
def test_errors_are_one_line(config_path: Path, args: list[str], stdin: str, message: str) -> None:
    if "already exists" in message:
        run_cli("register-user", "--config-path", str(config_path), "--user", "alice", stdin="p\n")
    result = run_cli("register-user", "--config-path", str(config_path), *args, stdin=stdin)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_bad_config_path(tmp_path: Path) -> None:
    result = run_cli(
        "register-user",
        "--config-path",
        str(tmp_path / "missing.yaml"),
        "--user",
        "a",
        stdin="pw\n",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
