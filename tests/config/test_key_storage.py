"""The signing key at rest: sealed under the secrets key, stable key ID, Synapse files accepted,
clear errors, and no key material in the clear on disk or in logs."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest
from signedjson.key import generate_signing_key, write_signing_keys

from homeserver.crypto.base64 import encode_base64
from homeserver.crypto.key_storage import (
    SECRETS_KEY_ENV,
    KeyStorageError,
    generate_secrets_key_file,
    load_or_create_signing_key,
    read_signing_key,
    write_signing_key,
)
from homeserver.crypto.signing import key_id

NO_ENV: dict[str, str] = {}


def _paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "example.com.signing.key", tmp_path / "secrets.key"


def _seed_forms(seed: bytes) -> list[bytes]:
    """Ways a seed could appear in a file by mistake."""
    return [
        seed,
        encode_base64(seed).encode(),
        base64.b64encode(seed),
        base64.urlsafe_b64encode(seed).rstrip(b"="),
        seed.hex().encode(),
    ]


def test_created_once_then_stable(tmp_path: Path) -> None:
    signing_path, secrets_path = _paths(tmp_path)
    key, created = load_or_create_signing_key(signing_path, secrets_path, NO_ENV)
    assert created
    assert key_id(key).startswith("ed25519:a_") and len(key_id(key)) == len("ed25519:a_XXXX")
    again, created_again = load_or_create_signing_key(signing_path, secrets_path, NO_ENV)
    assert not created_again
    assert key_id(again) == key_id(key)
    assert bytes(again) == bytes(key)
    for path in (signing_path, secrets_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_sealed_file_does_not_hold_the_seed(tmp_path: Path) -> None:
    signing_path, secrets_path = _paths(tmp_path)
    key, _ = load_or_create_signing_key(signing_path, secrets_path, NO_ENV)
    content = signing_path.read_bytes()
    assert content.startswith(b"sealed-v1 ed25519 " + key.version.encode())
    for form in _seed_forms(bytes(key)):
        assert form not in content
        assert form not in secrets_path.read_bytes()


def test_secrets_key_from_environment(tmp_path: Path) -> None:
    signing_path, secrets_path = _paths(tmp_path)
    env = {SECRETS_KEY_ENV: encode_base64(os.urandom(32))}
    key, _ = load_or_create_signing_key(signing_path, secrets_path, env)
    assert not secrets_path.exists()  # the environment holds the KEK; no file is written
    assert bytes(read_signing_key(signing_path, secrets_path, env)) == bytes(key)
    with pytest.raises(KeyStorageError, match="not found"):
        read_signing_key(signing_path, secrets_path, NO_ENV)


def test_wrong_secrets_key(tmp_path: Path) -> None:
    signing_path, secrets_path = _paths(tmp_path)
    load_or_create_signing_key(signing_path, secrets_path, NO_ENV)
    wrong = {SECRETS_KEY_ENV: encode_base64(os.urandom(32))}
    with pytest.raises(KeyStorageError, match="secrets key is wrong or the file is corrupt"):
        read_signing_key(signing_path, secrets_path, wrong)
    secrets_path.unlink()
    generate_secrets_key_file(secrets_path)
    with pytest.raises(KeyStorageError, match="cannot decrypt"):
        read_signing_key(signing_path, secrets_path, NO_ENV)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "must be 32 bytes of base64, not 0"),
        ("c2hvcnQ\n", "must be 32 bytes of base64, not 5"),
        ("!!!not base64!!!\n", "not valid base64"),
    ],
)
def test_bad_secrets_key_file(tmp_path: Path, content: str, message: str) -> None:
    signing_path, secrets_path = _paths(tmp_path)
    load_or_create_signing_key(signing_path, secrets_path, NO_ENV)
    secrets_path.write_text(content)
    with pytest.raises(KeyStorageError) as info:
        read_signing_key(signing_path, secrets_path, NO_ENV)
    assert message in str(info.value)


def _tamper(line: str, field: int, value: str) -> str:
    fields = line.split()
    fields[field] = value
    return " ".join(fields)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda line: line[:-10],  # truncated ciphertext
        lambda line: _tamper(line, 2, "a_EVIL"),  # key ID edited: bound as associated data
        lambda line: _tamper(line, 4, encode_base64(os.urandom(48))),
        lambda line: _tamper(line, 3, "%%%"),
        lambda line: _tamper(line, 3, encode_base64(b"short")),
        lambda line: line + " extra",
        lambda line: "garbage " + line,
        lambda line: "\n",
    ],
)
def test_corrupt_signing_key_file(tmp_path: Path, corrupt: object) -> None:
    signing_path, secrets_path = _paths(tmp_path)
    load_or_create_signing_key(signing_path, secrets_path, NO_ENV)
    line = signing_path.read_text().strip()
    signing_path.write_text(corrupt(line) + "\n")  # type: ignore[operator]
    with pytest.raises(KeyStorageError) as info:
        read_signing_key(signing_path, secrets_path, NO_ENV)
    message = str(info.value)
    assert "\n" not in message and str(signing_path) in message


def test_synapse_key_file_accepted_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    signing_path, secrets_path = _paths(tmp_path)
    synapse_key = generate_signing_key("a_Syn1")
    with signing_path.open("w") as f:
        write_signing_keys(f, [synapse_key])
    with caplog.at_level(logging.DEBUG):
        key, created = load_or_create_signing_key(signing_path, secrets_path, NO_ENV)
    assert not created
    assert key_id(key) == "ed25519:a_Syn1"
    assert bytes(key) == bytes(synapse_key)
    assert not secrets_path.exists()  # a plain key needs no secrets key
    assert "not encrypted" in caplog.text or "unencrypted" in caplog.text
    for form in _seed_forms(bytes(synapse_key)):
        assert form.decode("latin-1") not in caplog.text


def test_synapse_key_file_with_a_bad_seed(tmp_path: Path) -> None:
    signing_path, secrets_path = _paths(tmp_path)
    signing_path.write_text("ed25519 a_x c2hvcnQ\n")
    with pytest.raises(KeyStorageError, match="not 32 bytes"):
        read_signing_key(signing_path, secrets_path, NO_ENV)


def test_nothing_secret_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    signing_path, secrets_path = _paths(tmp_path)
    with caplog.at_level(logging.DEBUG):
        key, _ = load_or_create_signing_key(signing_path, secrets_path, NO_ENV)
        read_signing_key(signing_path, secrets_path, NO_ENV)
    kek = secrets_path.read_text().strip()
    assert kek not in caplog.text
    for form in _seed_forms(bytes(key)):
        assert form.decode("latin-1") not in caplog.text


def test_never_overwrites_key_files(tmp_path: Path) -> None:
    signing_path, secrets_path = _paths(tmp_path)
    key, _ = load_or_create_signing_key(signing_path, secrets_path, NO_ENV)
    before = signing_path.read_bytes(), secrets_path.read_bytes()
    with pytest.raises(KeyStorageError, match="already exists"):
        generate_secrets_key_file(secrets_path)
    kek = generate_secrets_key_file(tmp_path / "other.key")
    with pytest.raises(KeyStorageError, match="already exists"):
        write_signing_key(signing_path, key, kek)
    assert (signing_path.read_bytes(), secrets_path.read_bytes()) == before


def test_readable_key_files_are_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    signing_path, secrets_path = _paths(tmp_path)
    load_or_create_signing_key(signing_path, secrets_path, NO_ENV)
    secrets_path.chmod(0o644)
    signing_path.chmod(0o640)
    with caplog.at_level(logging.WARNING):
        read_signing_key(signing_path, secrets_path, NO_ENV)
    assert "mode 0644); its mode is now 0600" in caplog.text
    assert "mode 0640); its mode is now 0600" in caplog.text
    assert stat.S_IMODE(secrets_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(signing_path.stat().st_mode) == 0o600
