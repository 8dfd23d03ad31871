"""The server's ed25519 signing key at rest, encrypted under a key-encryption key (KEK).

Files:

* the KEK: 32 random bytes as base64 on one line in ``secrets_key_path`` (mode 0600), or the
  same text in the ``HOMESERVER_SECRETS_KEY`` environment variable, which wins when set;
* the signing key: one line ``sealed-v1 ed25519 <version> <nonce> <ciphertext>`` in
  ``signing_key_path``. The seed is sealed with AES-256-GCM; the algorithm and key version are
  the associated data, so a file whose key ID was edited fails to open instead of signing under
  a wrong ID.

A Synapse key file (``ed25519 <version> <seed>`` lines, what ``signedjson.key`` writes) is read
as it is, keeping its key ID, with a warning that it is not encrypted — converting it silently
would break a rollback to Synapse.

Every failure raises :class:`KeyStorageError` with one line an operator can act on. No message
or log line here contains key material.
"""

from __future__ import annotations

import logging
import os
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.signing import SigningKey
from signedjson.key import generate_signing_key

from homeserver.crypto.base64 import decode_base64, encode_base64
from homeserver.crypto.signing import key_id
from homeserver.private_files import PRIVATE_FILE_MODE, ensure_private_dir, tighten

logger = logging.getLogger(__name__)

SECRETS_KEY_ENV = "HOMESERVER_SECRETS_KEY"
KEK_BYTES = 32
_SEALED_MAGIC = "sealed-v1"
_NONCE_BYTES = 12
_SEED_BYTES = 32
_VERSION_ALPHABET = string.ascii_letters + string.digits


class KeyStorageError(Exception):
    """The signing key or the secrets key cannot be used. The message is safe to print."""


@dataclass(frozen=True, slots=True)
class SecretsKey:
    """The key-encryption key and where it came from (for messages; never the key itself)."""

    key: bytes
    source: str

    def __repr__(self) -> str:
        return f"SecretsKey(source={self.source!r})"


# -- the key-encryption key --------------------------------------------------------------------


def _decode_kek(text: str, source: str) -> SecretsKey:
    try:
        key = decode_base64(text.strip())
    except ValueError:
        raise KeyStorageError(f"the secrets key in {source} is not valid base64") from None
    if len(key) != KEK_BYTES:
        raise KeyStorageError(
            f"the secrets key in {source} must be {KEK_BYTES} bytes of base64, not {len(key)}"
        )
    return SecretsKey(key, source)


def secrets_key_from_env(environ: Mapping[str, str]) -> SecretsKey | None:
    text = environ.get(SECRETS_KEY_ENV)
    if not text:
        return None
    return _decode_kek(text, f"the {SECRETS_KEY_ENV} environment variable")


def read_secrets_key(path: Path, environ: Mapping[str, str] | None = None) -> SecretsKey:
    """The KEK from ``HOMESERVER_SECRETS_KEY`` if set, else from the file at ``path``."""
    from_env = secrets_key_from_env(os.environ if environ is None else environ)
    if from_env is not None:
        return from_env
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyStorageError(
            f"secrets key file {path} not found (and {SECRETS_KEY_ENV} is not set)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyStorageError(f"cannot read secrets key file {path}: {e}") from None
    tighten(path)
    return _decode_kek(text, str(path))


def generate_secrets_key_file(path: Path) -> SecretsKey:
    """Write a new random KEK to ``path`` (mode 0600). Refuses to replace an existing file: the
    signing key encrypted under the old KEK would be lost."""
    key = secrets.token_bytes(KEK_BYTES)
    _write_private_file(path, encode_base64(key) + "\n")
    return SecretsKey(key, str(path))


# -- the signing key ---------------------------------------------------------------------------


def new_key_version() -> str:
    """A fresh key version like Synapse's: ``a_`` and four random letters or digits."""
    return "a_" + "".join(secrets.choice(_VERSION_ALPHABET) for _ in range(4))


def _associated_data(version: str) -> bytes:
    return f"{_SEALED_MAGIC} ed25519 {version}".encode("ascii")


def seal_signing_key(signing_key: SigningKey, kek: SecretsKey) -> str:
    """The sealed-file line for ``signing_key`` (without the newline)."""
    version: str = signing_key.version  # type: ignore[attr-defined]
    nonce = secrets.token_bytes(_NONCE_BYTES)
    ciphertext = AESGCM(kek.key).encrypt(nonce, bytes(signing_key), _associated_data(version))
    return f"{_SEALED_MAGIC} ed25519 {version} {encode_base64(nonce)} {encode_base64(ciphertext)}"


def _open_sealed(fields: list[str], path: Path, kek: SecretsKey) -> SigningKey:
    if len(fields) != 5 or fields[1] != "ed25519" or not fields[2]:
        raise KeyStorageError(f"signing key file {path} is corrupt (malformed sealed key line)")
    version = fields[2]
    try:
        nonce = decode_base64(fields[3])
        ciphertext = decode_base64(fields[4])
    except ValueError:
        raise KeyStorageError(f"signing key file {path} is corrupt (bad base64)") from None
    if len(nonce) != _NONCE_BYTES:
        raise KeyStorageError(f"signing key file {path} is corrupt (bad nonce)")
    try:
        seed = AESGCM(kek.key).decrypt(nonce, ciphertext, _associated_data(version))
    except InvalidTag:
        raise KeyStorageError(
            f"cannot decrypt signing key file {path} with the secrets key from {kek.source}: "
            "the secrets key is wrong or the file is corrupt"
        ) from None
    if len(seed) != _SEED_BYTES:
        raise KeyStorageError(f"signing key file {path} is corrupt (bad seed length)")
    return _signing_key(seed, version)


def _signing_key(seed: bytes, version: str) -> SigningKey:
    key = SigningKey(seed)
    # signedjson's convention: the key object carries its algorithm and version.
    key.alg = "ed25519"  # type: ignore[attr-defined]
    key.version = version  # type: ignore[attr-defined]
    return key


def _open_synapse(lines: list[list[str]], path: Path) -> SigningKey:
    fields = lines[0]
    if len(fields) != 3 or not fields[1]:
        raise KeyStorageError(
            f"signing key file {path} is corrupt (expected 'ed25519 <version> <base64 seed>')"
        )
    try:
        seed = decode_base64(fields[2])
    except ValueError:
        raise KeyStorageError(f"signing key file {path} is corrupt (bad base64)") from None
    if len(seed) != _SEED_BYTES:
        raise KeyStorageError(f"signing key file {path} is corrupt (the seed is not 32 bytes)")
    if len(lines) > 1:
        logger.warning("signing key file %s holds %d keys; using the first", path, len(lines))
    logger.warning(
        "signing key file %s is a plain (unencrypted) Synapse key file; it is used as it is",
        path,
    )
    return _signing_key(seed, fields[1])


def read_signing_key(
    path: Path, secrets_key_path: Path, environ: Mapping[str, str] | None = None
) -> SigningKey:
    """Load the signing key at ``path``: sealed (needs the KEK) or a Synapse plain key file."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyStorageError(f"signing key file {path} not found") from None
    except UnicodeDecodeError:
        raise KeyStorageError(f"signing key file {path} is corrupt (not text)") from None
    except OSError as e:
        raise KeyStorageError(f"cannot read signing key file {path}: {e.strerror}") from None
    tighten(path)
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines:
        raise KeyStorageError(f"signing key file {path} is empty")
    if lines[0][0] == _SEALED_MAGIC:
        return _open_sealed(lines[0], path, read_secrets_key(secrets_key_path, environ))
    if lines[0][0] == "ed25519":
        return _open_synapse(lines, path)
    raise KeyStorageError(f"signing key file {path} is corrupt (unknown format)")


def write_signing_key(path: Path, signing_key: SigningKey, kek: SecretsKey) -> None:
    """Seal ``signing_key`` under ``kek`` into a new file at ``path`` (mode 0600)."""
    _write_private_file(path, seal_signing_key(signing_key, kek) + "\n")


def load_or_create_signing_key(
    signing_key_path: Path,
    secrets_key_path: Path,
    environ: Mapping[str, str] | None = None,
) -> tuple[SigningKey, bool]:
    """The server's signing key, creating it (and the secrets key file if needed) when there is
    no key file yet — as Synapse creates a missing key. Returns ``(key, created)``."""
    environ = os.environ if environ is None else environ
    if signing_key_path.exists():
        return read_signing_key(signing_key_path, secrets_key_path, environ), False
    kek = secrets_key_from_env(environ)
    if kek is None:
        kek = (
            read_secrets_key(secrets_key_path, environ)
            if secrets_key_path.exists()
            else generate_secrets_key_file(secrets_key_path)
        )
    signing_key = generate_signing_key(new_key_version())
    write_signing_key(signing_key_path, signing_key, kek)
    logger.info("created signing key %s in %s", key_id(signing_key), signing_key_path)
    return signing_key, True


# -- files -------------------------------------------------------------------------------------


def _write_private_file(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` readable by the owner only, atomically: the data goes to a
    0600 temporary file next to it, then hard-linked into place, which fails rather than replace
    an existing file (a key must never be lost to a second ``generate-config``)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        ensure_private_dir(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        os.fchmod(fd, PRIVATE_FILE_MODE)  # exactly 0600, whatever the umask
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise KeyStorageError(f"{path} already exists; not replacing it") from None
    except OSError as e:
        raise KeyStorageError(f"cannot write {path}: {e.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
