"""``signing_key_path``, ``secrets_key_path``, ``old_signing_keys`` and ``key_refresh_interval``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from homeserver.config._reader import ConfigError, Reader
from homeserver.crypto.base64 import decode_base64

KEYS = frozenset(
    {"signing_key_path", "secrets_key_path", "old_signing_keys", "key_refresh_interval"}
)

DEFAULT_SECRETS_KEY_FILE = "secrets.key"
#: Synapse's default: how long other servers may cache our key response.
DEFAULT_KEY_REFRESH_INTERVAL_MS = 24 * 3600 * 1000


def default_signing_key_file(server_name: str) -> str:
    """Synapse's file name, so a Synapse config directory works unchanged."""
    return f"{server_name}.signing.key"


@dataclass(frozen=True, slots=True)
class OldVerifyKey:
    key_id: str
    #: Unpadded base64 of the public key (public, safe to log).
    key: str
    expired_ts: int


@dataclass(frozen=True, slots=True)
class KeysConfig:
    signing_key_path: Path
    #: Where the key-encryption key lives; HOMESERVER_SECRETS_KEY overrides it.
    secrets_key_path: Path
    old_signing_keys: tuple[OldVerifyKey, ...]
    key_refresh_interval_ms: int


def _parse_old_keys(reader: Reader) -> tuple[OldVerifyKey, ...]:
    section = reader.sub("old_signing_keys")
    old: list[OldVerifyKey] = []
    for key_id in section.data:
        entry = section.sub(str(key_id))
        algorithm, _, version = str(key_id).partition(":")
        if algorithm != "ed25519" or not version:
            raise ConfigError(entry.path, "key ID must look like ed25519:<version>")
        key = entry.string("key")
        try:
            if len(decode_base64(key)) != 32:
                raise ValueError
        except ValueError:
            raise entry.error("key", "must be an unpadded base64 ed25519 public key") from None
        old.append(
            OldVerifyKey(
                key_id=str(key_id), key=key, expired_ts=entry.integer("expired_ts", minimum=0)
            )
        )
        entry.warn_unknown()
    return tuple(old)


def parse_keys(reader: Reader, server_name: str) -> KeysConfig:
    signing = reader.path_value("signing_key_path")
    secrets = reader.path_value("secrets_key_path")
    refresh = reader.duration_seconds(
        "key_refresh_interval",
        DEFAULT_KEY_REFRESH_INTERVAL_MS / 1000,
        bare_number_unit="ms",
    )
    return KeysConfig(
        signing_key_path=signing or reader.config_dir / default_signing_key_file(server_name),
        secrets_key_path=secrets or reader.config_dir / DEFAULT_SECRETS_KEY_FILE,
        old_signing_keys=_parse_old_keys(reader),
        key_refresh_interval_ms=int(refresh * 1000),
    )
