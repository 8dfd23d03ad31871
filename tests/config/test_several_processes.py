"""Configuration for several processes: ``--config-path`` given more than once (later files
override earlier keys: mappings merged, everything else replaced), ``redis`` and
``instance_name``, and SQLite's one-process rule (a second server on one database is refused
with one line, and the first keeps serving)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from homeserver.app import StartupError, start_homeserver
from homeserver.cli import _parser
from homeserver.config import ConfigError, HomeserverConfig
from homeserver.config.homeserver import merge_config
from homeserver.storage.process_lock import DatabaseInUse, ProcessLock

MERGES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("new key added", {"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
    ("scalar replaced", {"a": 1}, {"a": 2}, {"a": 2}),
    (
        "mappings merged key by key",
        {"redis": {"enabled": True, "host": "r1"}},
        {"redis": {"port": 7000}},
        {"redis": {"enabled": True, "host": "r1", "port": 7000}},
    ),
    (
        "nested mappings merged",
        {"database": {"name": "psycopg2", "args": {"host": "db", "cp_max": 10}}},
        {"database": {"args": {"cp_max": 5}}},
        {"database": {"name": "psycopg2", "args": {"host": "db", "cp_max": 5}}},
    ),
    (
        "lists replaced whole",
        {"listeners": [{"port": 8008}, {"port": 9000}]},
        {"listeners": [{"port": 8009}]},
        {"listeners": [{"port": 8009}]},
    ),
    ("mapping replaced by a null", {"redis": {"enabled": True}}, {"redis": None}, {"redis": None}),
    ("scalar replaced by a mapping", {"redis": 1}, {"redis": {"port": 2}}, {"redis": {"port": 2}}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "base", "override", "expected"), MERGES, ids=[m[0] for m in MERGES]
)
def test_merge_rules(
    case: str, base: dict[str, Any], override: dict[str, Any], expected: dict[str, Any]
) -> None:
    before = yaml.safe_dump(base)
    assert merge_config(base, override) == expected
    assert yaml.safe_dump(base) == before  # the inputs are left alone


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_later_files_override_earlier_ones(tmp_path: Path) -> None:
    shared = _write(
        tmp_path / "homeserver.yaml",
        {
            "server_name": "example.org",
            "listeners": [{"port": 8008, "resources": [{"names": ["client"]}]}],
            "redis": {"enabled": True, "host": "redis.internal"},
            "database": {"name": "sqlite3", "args": {"database": "hs.db"}},
        },
    )
    (tmp_path / "p2").mkdir()
    own = _write(
        tmp_path / "p2" / "process2.yaml",
        {
            "instance_name": "process2",
            "listeners": [{"port": 8009, "resources": [{"names": ["client"]}]}],
            "redis": {"port": 6380},
        },
    )
    config = HomeserverConfig.load_files([shared, own])
    assert config.instance_name == "process2"
    assert [listener.port for listener in config.listeners] == [8009]
    assert (config.redis.enabled, config.redis.host, config.redis.port) == (
        True,
        "redis.internal",
        6380,
    )
    assert config.redis.prefix == "homeserver:example.org:"
    # Relative paths: the first file's directory.
    assert config.database.sqlite_path == tmp_path / "hs.db"
    # The CLI takes --config-path (-c) more than once, in order.
    args = _parser().parse_args(["run", "-c", str(shared), "--config-path", str(own)])
    assert args.config_path == [str(shared), str(own)]


def test_redis_and_instance_name_defaults_and_errors(tmp_path: Path) -> None:
    config = HomeserverConfig.parse({"server_name": "example.org"}, tmp_path)
    assert not config.redis.enabled
    assert (config.redis.host, config.redis.port, config.redis.dbid) == ("localhost", 6379, 0)
    assert config.instance_name.endswith(f"-{os.getpid()}")
    secret = HomeserverConfig.parse(
        {"server_name": "example.org", "redis": {"password": "hunter2", "prefix": "x"}}, tmp_path
    )
    assert "hunter2" not in repr(secret.redis)
    assert secret.redis.prefix == "x:"
    bad = [
        ({"redis": {"port": 0}}, "redis.port"),
        ({"redis": {"enabled": "yes"}}, "redis.enabled"),
        ({"redis": {"dbid": -1}}, "redis.dbid"),
        ({"redis": []}, "redis"),
        ({"instance_name": "two words"}, "instance_name"),
    ]
    for data, key in bad:
        with pytest.raises(ConfigError) as info:
            HomeserverConfig.parse({"server_name": "example.org", **data}, tmp_path)
        assert info.value.key_path == key
    unknown = HomeserverConfig.parse(
        {"server_name": "example.org", "redis": {"hots": "x"}}, tmp_path
    )
    assert any("redis.hots" in w for w in unknown.warnings)
    with pytest.raises(ConfigError, match="mapping"):
        HomeserverConfig.load_files([_write(tmp_path / "list.yaml", [1])])  # type: ignore[arg-type]


async def test_a_second_server_on_one_sqlite_database_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # redis.enabled means nothing to SQLite's one process: a warning, no bus.
    config = HomeserverConfig.parse(
        {"server_name": "example.org", "redis": {"enabled": True}}, tmp_path
    )
    environ = {"HOMESERVER_SECRETS_KEY": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="}
    first = await start_homeserver(config, environ=environ)
    assert first.redis_bus is None
    assert any("redis.enabled is ignored with SQLite" in r.message for r in caplog.records)
    try:
        with pytest.raises(StartupError) as info:
            await start_homeserver(config, environ=environ)
        message = str(info.value)
        assert "\n" not in message
        assert "in use by another homeserver process" in message
        assert f"pid {os.getpid()}" in message
        # The first keeps serving.
        assert await first.store.users.get_user("@nobody:example.org") is None
    finally:
        await first.store.db.close()
    # Closed (or dead: the kernel drops the lock with the process): the next one starts.
    again = await start_homeserver(config, environ=environ)
    await again.store.db.close()


def test_a_lock_file_left_behind_does_not_block(tmp_path: Path) -> None:
    database = tmp_path / "homeserver.db"
    (tmp_path / "homeserver.db.lock").write_text("999999\n")  # a crashed holder's pid
    lock = ProcessLock.acquire(database)
    try:
        with pytest.raises(DatabaseInUse, match=f"pid {os.getpid()}"):
            ProcessLock.acquire(database)
    finally:
        lock.release()
    ProcessLock.acquire(database).release()
