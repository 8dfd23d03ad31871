"""The whole homeserver.yaml, parsed into one typed, frozen :class:`HomeserverConfig`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from homeserver.config import database as _database
from homeserver.config import federation as _federation
from homeserver.config import instance as _instance
from homeserver.config import keys as _keys
from homeserver.config import listeners as _listeners
from homeserver.config import log_config as _log_config
from homeserver.config import media as _media
from homeserver.config import modules as _modules
from homeserver.config import presence as _presence
from homeserver.config import ratelimiting as _ratelimiting
from homeserver.config import redis as _redis
from homeserver.config import registration as _registration
from homeserver.config import room_upgrades as _room_upgrades
from homeserver.config import rooms as _rooms
from homeserver.config import server as _server
from homeserver.config import server_notices as _server_notices
from homeserver.config import user_directory as _user_directory
from homeserver.config import voip as _voip
from homeserver.config._reader import ConfigError, Reader

#: Every top-level key some section reads; anything else draws an "unknown key" warning.
KNOWN_TOP_LEVEL_KEYS: frozenset[str] = frozenset().union(
    _server.KEYS,
    _listeners.KEYS,
    _database.KEYS,
    _keys.KEYS,
    _registration.KEYS,
    _rooms.KEYS,
    _ratelimiting.KEYS,
    _room_upgrades.KEYS,
    _federation.KEYS,
    _log_config.KEYS,
    _media.KEYS,
    _modules.KEYS,
    _presence.KEYS,
    _voip.KEYS,
    _user_directory.KEYS,
    _server_notices.KEYS,
    _instance.KEYS,
    _redis.KEYS,
)


@dataclass(frozen=True, slots=True)
class HomeserverConfig:
    server: _server.ServerConfig
    listeners: tuple[_listeners.ListenerConfig, ...]
    tls: _listeners.TlsConfig
    database: _database.DatabaseConfig
    keys: _keys.KeysConfig
    registration: _registration.RegistrationConfig
    rooms: _rooms.RoomsConfig
    ratelimiting: _ratelimiting.RateLimitingConfig
    room_upgrades: _room_upgrades.RoomUpgradesConfig
    federation: _federation.FederationConfig
    logging: _log_config.LoggingConfig
    media: _media.MediaConfig
    modules: tuple[_modules.ModuleConfig, ...]
    voip: _voip.VoipConfig
    #: The directory relative paths were resolved against.
    config_dir: Path
    #: Unknown keys and ignored values, for the caller to log once logging is set up.
    warnings: tuple[str, ...] = ()
    presence: _presence.PresenceConfig = field(default_factory=_presence.PresenceConfig)
    user_directory: _user_directory.UserDirectoryConfig = field(
        default_factory=_user_directory.UserDirectoryConfig
    )
    server_notices: _server_notices.ServerNoticesConfig = field(
        default_factory=_server_notices.ServerNoticesConfig
    )
    #: ``instance_name`` and ``worker_leases``: this process among those sharing the database.
    instance: _instance.InstanceConfig = field(default_factory=_instance.InstanceConfig)
    redis: _redis.RedisConfig = field(default_factory=_redis.RedisConfig)

    @property
    def instance_name(self) -> str:
        """This process's name among several (logs, metrics, leases, Redis messages)."""
        return self.instance.instance_name

    @property
    def server_name(self) -> str:
        return self.server.server_name

    @classmethod
    def parse(cls, data: Any, config_dir: Path | str) -> HomeserverConfig:
        """Validate an already-loaded YAML document; raise :class:`ConfigError` on a bad value."""
        if not isinstance(data, Mapping):
            raise ConfigError("", "the config file must be a YAML mapping of keys to values")
        warnings: list[str] = []
        reader = Reader(data, "", Path(config_dir).resolve(), warnings)
        server_config = _server.parse_server(reader)
        listener_configs, tls = _listeners.parse_listeners(reader)
        config = cls(
            server=server_config,
            listeners=listener_configs,
            tls=tls,
            database=_database.parse_database(reader),
            keys=_keys.parse_keys(reader, server_config.server_name),
            registration=_registration.parse_registration(reader),
            rooms=_rooms.parse_rooms(reader),
            ratelimiting=_ratelimiting.parse_ratelimiting(reader),
            room_upgrades=_room_upgrades.parse_room_upgrades(reader),
            federation=_federation.parse_federation(reader),
            logging=_log_config.parse_logging(reader),
            media=_media.parse_media(reader),
            modules=_modules.parse_modules(reader),
            voip=_voip.parse_voip(reader),
            config_dir=reader.config_dir,
            presence=_presence.parse_presence(reader),
            user_directory=_user_directory.parse_user_directory(reader),
            server_notices=_server_notices.parse_server_notices(
                reader, server_config.server_name
            ),
            instance=_instance.parse_instance(reader),
            redis=_redis.parse_redis(reader, server_config.server_name),
        )
        reader.warn_unknown(KNOWN_TOP_LEVEL_KEYS)
        # The warnings list was filled while parsing; freeze what it holds now.
        return dataclasses.replace(config, warnings=tuple(warnings))

    @classmethod
    def load(cls, path: Path | str) -> HomeserverConfig:
        """Read and validate the YAML file at ``path``."""
        return cls.load_files([path])

    @classmethod
    def load_files(cls, paths: Sequence[Path | str]) -> HomeserverConfig:
        """Read the YAML files at ``paths`` (``--config-path`` given more than once), each
        overriding the ones before it (:func:`merge_config`), and validate the result.
        Relative paths in any of them are relative to the first file's directory."""
        if not paths:
            raise ConfigError("", "no config file given")
        merged: dict[str, Any] = {}
        for path in paths:
            merged = merge_config(merged, _read_yaml(Path(path)))
        return cls.parse(merged, Path(paths[0]).resolve().parent)


def merge_config(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``: a key of both whose two values are mappings is merged
    the same way (so a process's own file may set ``redis: {host: ...}`` alone); any other
    value of ``override`` (a list such as ``listeners``, a scalar, null) replaces the base's
    whole. Synapse's repeated ``-c`` replaces whole top-level keys; merging mappings keeps
    every such file working the same, except one that relied on a later partial mapping
    dropping the earlier one's other keys."""
    merged = dict(base)
    for key, value in override.items():
        before = merged.get(key)
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            merged[key] = merge_config(before, value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> Mapping[str, Any]:
    """One config file's top-level mapping (an empty file is an empty one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), f"cannot read the file: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise ConfigError(str(path), f"not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(str(path), "must be a YAML mapping of keys to values")
    return data
