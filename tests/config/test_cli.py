"""``homeserver generate-config`` and ``hash-password``, run in-process through ``main``."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from homeserver.cli import main
from homeserver.config import HomeserverConfig
from homeserver.crypto.base64 import encode_base64
from homeserver.crypto.key_storage import SECRETS_KEY_ENV, read_signing_key
from homeserver.crypto.passwords import verify_password


@pytest.fixture(autouse=True)
def _no_env_kek(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRETS_KEY_ENV, raising=False)


def _generate(config_path: Path, *extra: str) -> int:
    base = ["generate-config", "--server-name", "localhost:8008", "--config-path"]
    return main([*base, str(config_path), *extra])


def test_generate_config_writes_a_working_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tmp_path / "homeserver.yaml"
    assert _generate(config_path, "--data-dir", str(tmp_path / "data")) == 0
    config = HomeserverConfig.load(config_path)
    assert config.server_name == "localhost:8008"
    assert config.warnings == ()
    data = (tmp_path / "data").resolve()
    assert config.database.sqlite_path == data / "homeserver.db"
    assert config.keys.signing_key_path == data / "localhost:8008.signing.key"
    assert config.keys.secrets_key_path == data / "secrets.key"
    # Relative to the config file, so the directory can move as a whole.
    assert 'database: "data/homeserver.db"' in config_path.read_text()
    secret = config.registration.registration_shared_secret
    assert secret is not None and len(secret) >= 32
    for path in (config_path, config.keys.secrets_key_path, config.keys.signing_key_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    key = read_signing_key(config.keys.signing_key_path, config.keys.secrets_key_path, {})
    out = capsys.readouterr().out
    assert f"ed25519:{key.version}" in out  # the summary names the key ID, never the key


def test_generate_config_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tmp_path / "homeserver.yaml"
    assert _generate(config_path) == 0
    before = config_path.read_bytes()
    key_before = (tmp_path / "localhost:8008.signing.key").read_bytes()
    capsys.readouterr()
    assert _generate(config_path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and str(config_path) in err
    assert config_path.read_bytes() == before
    assert (tmp_path / "localhost:8008.signing.key").read_bytes() == key_before


def test_generate_config_keeps_an_existing_key(tmp_path: Path) -> None:
    first = tmp_path / "first.yaml"
    assert _generate(first) == 0
    key_file = tmp_path / "localhost:8008.signing.key"
    key_before = key_file.read_bytes()
    # A second config beside the first (say, the first was deleted) reuses the key.
    assert _generate(tmp_path / "second.yaml") == 0
    assert key_file.read_bytes() == key_before


def test_generate_config_rejects_a_bad_server_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _generate(tmp_path / "x.yaml", "--server-name", "not a name") == 2
    assert "invalid --server-name" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


def test_generate_config_with_env_secrets_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRETS_KEY_ENV, "A" * 43)
    assert _generate(tmp_path / "homeserver.yaml") == 0
    assert not (tmp_path / "secrets.key").exists()


def test_run_with_bad_config_prints_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tmp_path / "homeserver.yaml"
    config_path.write_text("server_name: example.com\nroom_upgrades:\n  lock_timeout: never\n")
    assert main(["run", "--config-path", str(config_path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()]
    assert err.startswith("config error: room_upgrades.lock_timeout: ")


def test_run_with_a_wrong_secrets_key_prints_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tmp_path / "homeserver.yaml"
    assert _generate(config_path) == 0
    capsys.readouterr()
    monkeypatch.setenv(SECRETS_KEY_ENV, encode_base64(os.urandom(32)))
    assert main(["run", "--config-path", str(config_path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()]
    assert err.startswith("error: cannot decrypt signing key file ")
    assert "Traceback" not in err


def test_run_with_a_corrupt_signing_key_prints_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tmp_path / "homeserver.yaml"
    assert _generate(config_path) == 0
    capsys.readouterr()
    (tmp_path / "localhost:8008.signing.key").write_text("sealed-v1 ed25519 a_x zz\n")
    assert main(["run", "--config-path", str(config_path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()]
    assert "is corrupt" in err


def test_hash_password_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert main(["hash-password"]) == 0
    password_hash = capsys.readouterr().out.strip()
    assert password_hash.startswith("$argon2id$")
    assert verify_password(password_hash, "correct horse")
    assert not verify_password(password_hash, "correct horse\n")


def test_hash_password_refuses_empty(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["hash-password"]) == 2
    assert "empty" in capsys.readouterr().err
