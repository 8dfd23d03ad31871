"""homeserver.yaml parsing: defaults, every section, and bad values naming their key path."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from homeserver.config import ConfigError, EncryptionByDefault, HomeserverConfig, RateLimit
from homeserver.config.homeserver import KNOWN_TOP_LEVEL_KEYS
from homeserver.config.template import render_sample
from tests.config.conftest import ParseConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults(parse_config: ParseConfig, tmp_path: Path) -> None:
    config = parse_config()
    assert config.server_name == "example.com"
    assert config.server.public_baseurl is None
    assert config.server.client_base_url == "https://example.com/"
    assert config.server.default_room_version == "12"
    (listener,) = config.listeners
    assert listener.port == 8008
    assert listener.bind_addresses == ("127.0.0.1",)
    assert listener.tls is False
    assert listener.resources == {"client", "federation"}
    assert listener.served_resources == {"client", "federation", "admin", "keys"}
    assert config.database.engine == "sqlite"
    assert config.database.sqlite_path == tmp_path.resolve() / "homeserver.db"
    assert config.keys.signing_key_path == tmp_path.resolve() / "example.com.signing.key"
    assert config.keys.secrets_key_path == tmp_path.resolve() / "secrets.key"
    assert config.keys.key_refresh_interval_ms == 86_400_000
    assert config.registration.enable_registration is False
    assert config.registration.registration_shared_secret is None
    assert config.rooms.encryption_enabled_by_default_for_room_type is EncryptionByDefault.OFF
    assert config.ratelimiting.rc_room_creation == RateLimit(0.016, 10)
    assert config.ratelimiting.rc_message == RateLimit(0.2, 10)
    assert config.ratelimiting.rc_registration == RateLimit(0.17, 3)
    assert config.ratelimiting.rc_login.failed_attempts == RateLimit(0.17, 3)
    assert config.ratelimiting.rc_joins.remote == RateLimit(0.01, 10)
    upgrades = config.room_upgrades
    assert upgrades.auto_join_local_members and upgrades.invite_remote_members
    assert upgrades.max_state_conflict_retries == 5
    assert upgrades.lock_timeout_seconds == 300
    assert config.federation.federation_verify_certificates is True
    assert not config.federation.is_ip_allowed(ipaddress.ip_address("127.0.0.1"))
    assert not config.federation.is_ip_allowed(ipaddress.ip_address("fe80::1"))
    assert config.federation.is_ip_allowed(ipaddress.ip_address("8.8.8.8"))
    assert config.federation.federation_domain_whitelist is None
    assert config.logging.log_config is None
    assert config.modules == ()
    assert config.warnings == ()


def test_every_section(tmp_path: Path) -> None:
    (tmp_path / "log.yaml").write_text("version: 1\n")
    data: dict[str, Any] = {
        "server_name": "matrix.example.org:8448",
        "public_baseurl": "https://matrix.example.org",
        "default_room_version": 10,  # unquoted in YAML: still the version "10"
        "serve_server_wellknown": True,
        "listeners": [
            {
                "port": 8008,
                "bind_addresses": ["127.0.0.1", "::1"],
                "type": "http",
                "x_forwarded": True,
                "resources": [{"names": ["client"], "compress": False}, {"names": ["metrics"]}],
            },
            {"port": 8448, "tls": True, "resources": [{"names": ["federation"]}]},
        ],
        "tls_certificate_path": "tls.crt",
        "tls_private_key_path": "/etc/tls.key",
        "enable_metrics": True,
        "database": {
            "name": "psycopg2",
            "args": {
                "user": "hs",
                "password": "p@ss word",
                "dbname": "homeserver",
                "host": "db.internal",
                "port": 5433,
                "cp_min": 2,
                "cp_max": 4,
            },
        },
        "signing_key_path": "keys/signing.key",
        "secrets_key_path": "/run/secrets/kek",
        "old_signing_keys": {
            "ed25519:a_old": {"key": "A" * 43, "expired_ts": 1_600_000_000_000},
        },
        "key_refresh_interval": "2h",
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "registration_shared_secret": "s3cret",
        "encryption_enabled_by_default_for_room_type": "invite",
        "default_power_level_content_override": {"private_chat": {"events_default": 10}},
        "rc_room_creation": {"per_second": 1, "burst_count": 2},
        "rc_message": {"per_second": 0.5},
        "rc_login": {"address": {"per_second": 1, "burst_count": 2}},
        "rc_registration": {"burst_count": 7},
        "rc_joins": {"per_second": 3, "burst_count": 4},
        "room_upgrades": {
            "auto_join_local_members": False,
            "invite_remote_members": False,
            "max_state_conflict_retries": 2,
            "lock_timeout": "90s",
        },
        "federation_verify_certificates": False,
        "ip_range_blacklist": ["10.0.0.0/8"],
        "ip_range_whitelist": ["10.1.0.0/16", "127.0.0.1"],
        "federation_domain_whitelist": ["matrix.org", "example.com"],
        "log_config": "log.yaml",
        "modules": [{"module": "my_pkg.audit.Module", "config": {"path": "/var/log/a"}}],
    }
    config = HomeserverConfig.parse(data, tmp_path)
    root = tmp_path.resolve()
    assert config.server.public_baseurl == "https://matrix.example.org/"
    assert config.server.default_room_version == "10"
    assert config.server.serve_server_wellknown is True
    first, second = config.listeners
    assert first.bind_addresses == ("127.0.0.1", "::1")
    assert first.resources == {"client", "metrics"} and first.x_forwarded
    assert second.tls and second.served_resources == {"federation", "keys"}
    assert config.tls.certificate_path == root / "tls.crt"
    assert config.tls.private_key_path == Path("/etc/tls.key")
    db = config.database
    assert (db.engine, db.cp_min, db.cp_max) == ("postgresql", 2, 4)
    assert db.postgres_dsn == "postgresql://hs:p%40ss%20word@db.internal:5433/homeserver"
    assert "password" not in db.public_args and "p@ss" not in repr(db)
    assert config.keys.signing_key_path == root / "keys" / "signing.key"
    assert config.keys.secrets_key_path == Path("/run/secrets/kek")
    assert config.keys.old_signing_keys[0].key_id == "ed25519:a_old"
    assert config.keys.key_refresh_interval_ms == 2 * 3600 * 1000
    assert config.registration.open_registration
    assert config.registration.registration_shared_secret == "s3cret"
    assert "s3cret" not in repr(config)
    assert config.rooms.encryption_enabled_by_default_for_room_type is EncryptionByDefault.INVITE
    assert config.rooms.default_power_level_content_override["private_chat"] == {
        "events_default": 10
    }
    limits = config.ratelimiting
    assert limits.rc_room_creation == RateLimit(1, 2)
    assert limits.rc_message == RateLimit(0.5, 10)
    assert limits.rc_login.address == RateLimit(1, 2)
    assert limits.rc_login.account == RateLimit(0.003, 5)
    assert limits.rc_registration == RateLimit(0.17, 7)
    assert limits.rc_joins.local == limits.rc_joins.remote == RateLimit(3, 4)
    assert config.room_upgrades.max_state_conflict_retries == 2
    assert config.room_upgrades.lock_timeout_seconds == 90
    assert not config.room_upgrades.auto_join_local_members
    fed = config.federation
    assert not fed.federation_verify_certificates
    assert not fed.is_ip_allowed(ipaddress.ip_address("10.2.3.4"))
    assert fed.is_ip_allowed(ipaddress.ip_address("10.1.3.4"))
    assert fed.is_ip_allowed(ipaddress.ip_address("127.0.0.1"))
    assert fed.is_domain_allowed("matrix.org") and not fed.is_domain_allowed("evil.example")
    assert config.logging.log_config == root / "log.yaml"
    assert config.modules[0].module == "my_pkg.audit.Module"
    assert config.modules[0].config == {"path": "/var/log/a"}
    assert config.warnings == ()


@pytest.mark.parametrize(
    ("args", "dsn"),
    [
        ({"dsn": "postgresql://u@h/db"}, "postgresql://u@h/db"),
        (
            {"database": "db", "host": "/var/run/postgresql"},
            "postgresql:///db?host=%2Fvar%2Frun%2Fpostgresql",
        ),
        (
            {"user": "u", "database": "db", "host": "::1", "sslmode": "require"},
            "postgresql://u@[::1]/db?sslmode=require",
        ),
    ],
)
def test_postgres_dsn(parse_config: ParseConfig, args: dict[str, Any], dsn: str) -> None:
    config = parse_config(database={"name": "postgresql", "args": args})
    assert config.database.postgres_dsn == dsn


def test_sqlite_memory_and_absolute(parse_config: ParseConfig) -> None:
    memory = parse_config(database={"name": "sqlite3", "args": {"database": ":memory:"}})
    assert memory.database.sqlite_path == ":memory:"
    absolute = parse_config(database={"name": "sqlite3", "args": {"database": "/srv/hs.db"}})
    assert absolute.database.sqlite_path == Path("/srv/hs.db")


def test_durations(parse_config: ParseConfig) -> None:
    assert parse_config(room_upgrades={"lock_timeout": 30}).room_upgrades.lock_timeout_seconds == 30
    assert (
        parse_config(room_upgrades={"lock_timeout": "1h"}).room_upgrades.lock_timeout_seconds
        == 3600
    )
    # Synapse's own duration keys read a bare number as milliseconds.
    assert parse_config(key_refresh_interval=60_000).keys.key_refresh_interval_ms == 60_000


def test_yaml_off_means_off(parse_config: ParseConfig) -> None:
    config = parse_config(encryption_enabled_by_default_for_room_type=False)
    assert config.rooms.encryption_enabled_by_default_for_room_type is EncryptionByDefault.OFF


def test_unknown_keys_are_warnings(parse_config: ParseConfig) -> None:
    config = parse_config(
        report_stats=False,
        listeners=[{"port": 8008, "resources": [{"names": ["client", "media"]}], "bogus": 1}],
        room_upgrades={"typo_key": True},
    )
    assert "unknown config key 'report_stats' ignored" in config.warnings
    assert "unknown config key 'listeners[0].bogus' ignored" in config.warnings
    assert "unknown config key 'room_upgrades.typo_key' ignored" in config.warnings
    assert any("listeners[0].resources[0].names[1]" in w for w in config.warnings)


BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"server_name": "bad name!"}, "server_name"),
    ({"server_name": 5}, "server_name"),
    ({"public_baseurl": "ftp://x"}, "public_baseurl"),
    ({"default_room_version": "99"}, "default_room_version"),
    ({"serve_server_wellknown": "yes"}, "serve_server_wellknown"),
    ({"listeners": {"port": 1}}, "listeners"),
    ({"listeners": []}, "listeners"),
    ({"listeners": ["x"]}, "listeners[0]"),
    ({"listeners": [{"resources": [{"names": ["client"]}]}]}, "listeners[0].port"),
    ({"listeners": [{"port": 0, "resources": [{"names": ["client"]}]}]}, "listeners[0].port"),
    ({"listeners": [{"port": "80", "resources": [{"names": ["client"]}]}]}, "listeners[0].port"),
    (
        {
            "listeners": [
                {"port": 1, "bind_addresses": ["localhost"], "resources": [{"names": ["client"]}]}
            ]
        },
        "listeners[0].bind_addresses[0]",
    ),
    (
        {"listeners": [{"port": 1, "type": "manhole", "resources": [{"names": ["client"]}]}]},
        "listeners[0].type",
    ),
    (
        {"listeners": [{"port": 1, "tls": 1, "resources": [{"names": ["client"]}]}]},
        "listeners[0].tls",
    ),
    (
        {"listeners": [{"port": 1, "tls": True, "resources": [{"names": ["client"]}]}]},
        "listeners[0].tls",
    ),
    ({"listeners": [{"port": 1}]}, "listeners[0].resources"),
    (
        {"listeners": [{"port": 1, "resources": [{"names": ["clients"]}]}]},
        "listeners[0].resources[0].names[0]",
    ),
    (
        {
            "listeners": [
                {"port": 1, "resources": [{"names": ["client"]}]},
                {"port": 1, "resources": [{"names": ["keys"]}]},
            ]
        },
        "listeners[1].port",
    ),
    ({"database": {"name": "mysql"}}, "database.name"),
    ({"database": {"name": "sqlite3", "args": {"database": ""}}}, "database.args.database"),
    ({"database": {"name": "psycopg2", "args": {"cp_min": 0}}}, "database.args.cp_min"),
    (
        {"database": {"name": "psycopg2", "args": {"cp_min": 5, "cp_max": 2}}},
        "database.args.cp_max",
    ),
    ({"database": {"name": "psycopg2", "args": {"port": "x"}}}, "database.args.port"),
    ({"database": {"name": "psycopg2", "args": {"dsn": "mysql://x"}}}, "database.args.dsn"),
    (
        {"database": {"name": "psycopg2", "args": {"dsn": "postgresql://x", "user": "u"}}},
        "database.args.dsn",
    ),
    (
        {"database": {"name": "psycopg2", "args": {"database": "a", "dbname": "b"}}},
        "database.args.dbname",
    ),
    ({"database": "sqlite"}, "database"),
    ({"signing_key_path": ""}, "signing_key_path"),
    ({"secrets_key_path": 3}, "secrets_key_path"),
    ({"old_signing_keys": {"rsa:1": {"key": "A" * 43, "expired_ts": 1}}}, "old_signing_keys.rsa:1"),
    (
        {"old_signing_keys": {"ed25519:a": {"key": "short", "expired_ts": 1}}},
        "old_signing_keys.ed25519:a.key",
    ),
    (
        {"old_signing_keys": {"ed25519:a": {"key": "A" * 43}}},
        "old_signing_keys.ed25519:a.expired_ts",
    ),
    ({"key_refresh_interval": "soon"}, "key_refresh_interval"),
    ({"enable_registration": "true"}, "enable_registration"),
    ({"enable_registration_without_verification": 1}, "enable_registration_without_verification"),
    ({"registration_shared_secret": ""}, "registration_shared_secret"),
    (
        {"registration_shared_secret": "a", "registration_shared_secret_path": "f"},
        "registration_shared_secret_path",
    ),
    ({"registration_shared_secret_path": "missing-file"}, "registration_shared_secret_path"),
    (
        {"encryption_enabled_by_default_for_room_type": "sometimes"},
        "encryption_enabled_by_default_for_room_type",
    ),
    (
        {"default_power_level_content_override": {"chat": {}}},
        "default_power_level_content_override.chat",
    ),
    (
        {"default_power_level_content_override": {"public_chat": 5}},
        "default_power_level_content_override.public_chat",
    ),
    ({"rc_room_creation": {"per_second": -1}}, "rc_room_creation.per_second"),
    ({"rc_message": {"burst_count": 0}}, "rc_message.burst_count"),
    ({"rc_login": {"account": {"per_second": "fast"}}}, "rc_login.account.per_second"),
    ({"rc_registration": []}, "rc_registration"),
    ({"rc_joins": {"remote": {"burst_count": True}}}, "rc_joins.remote.burst_count"),
    ({"room_upgrades": {"auto_join_local_members": "no"}}, "room_upgrades.auto_join_local_members"),
    (
        {"room_upgrades": {"invite_remote_members": None, "max_state_conflict_retries": -1}},
        "room_upgrades.max_state_conflict_retries",
    ),
    ({"room_upgrades": {"lock_timeout": "5 minutes"}}, "room_upgrades.lock_timeout"),
    ({"room_upgrades": {"lock_timeout": 0}}, "room_upgrades.lock_timeout"),
    ({"federation_verify_certificates": "no"}, "federation_verify_certificates"),
    ({"ip_range_blacklist": ["10.0.0.0/8", "not-a-range"]}, "ip_range_blacklist[1]"),
    ({"ip_range_whitelist": "10.0.0.0/8"}, "ip_range_whitelist"),
    ({"federation_domain_whitelist": ["ok.org", "bad domain"]}, "federation_domain_whitelist[1]"),
    ({"log_config": "missing.yaml"}, "log_config"),
    ({"modules": [{"module": "not a path"}]}, "modules[0].module"),
    ({"modules": [{"config": {}}]}, "modules[0].module"),
    ({"modules": [{"module": "a.B", "config": []}]}, "modules[0].config"),
    ({"instance_name": ""}, "instance_name"),
    ({"instance_name": 3}, "instance_name"),
    ({"instance_name": "a\nb"}, "instance_name"),
    ({"worker_leases": {"lease_timeout": "10ms"}}, "worker_leases.lease_timeout"),
    ({"worker_leases": {"poll_interval": "2h"}}, "worker_leases.poll_interval"),
    ({"worker_leases": []}, "worker_leases"),
]


@pytest.mark.parametrize(("overrides", "key_path"), BAD_VALUES)
def test_bad_value_names_its_key(
    parse_config: ParseConfig, overrides: dict[str, Any], key_path: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(**overrides)
    assert info.value.key_path == key_path
    assert str(info.value).startswith(f"{key_path}: ")


def test_missing_server_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        HomeserverConfig.parse({}, tmp_path)
    assert info.value.key_path == "server_name"


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        HomeserverConfig.parse(["server_name"], tmp_path)


def test_load_resolves_paths_against_the_config_dir(tmp_path: Path) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "homeserver.yaml").write_text("server_name: example.com\n")
    config = HomeserverConfig.load(config_dir / "homeserver.yaml")
    assert config.keys.secrets_key_path == config_dir.resolve() / "secrets.key"


def test_load_reports_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "homeserver.yaml"
    path.write_text("server_name: [oops\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        HomeserverConfig.load(path)
    with pytest.raises(ConfigError, match="file not found"):
        HomeserverConfig.load(tmp_path / "nope.yaml")


def test_registration_secret_from_file(parse_config: ParseConfig, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-a-file\n")
    config = parse_config(registration_shared_secret_path="secret")
    assert config.registration.registration_shared_secret == "from-a-file"


def test_sample_is_the_rendered_template_and_parses(tmp_path: Path) -> None:
    sample = (REPO_ROOT / "config.sample.yaml").read_text()
    assert sample == render_sample(), "regenerate config.sample.yaml from render_sample()"
    config = HomeserverConfig.parse(yaml.safe_load(sample), tmp_path)
    assert config.warnings == ()


NESTED_KEYS = [
    "bind_addresses", "x_forwarded", "resources", "names", "per_second", "burst_count",
    "address", "account", "failed_attempts", "local", "remote", "auto_join_local_members",
    "invite_remote_members", "max_state_conflict_retries", "lock_timeout", "cp_min", "cp_max",
    "dsn", "dbname", "allow_unsafe_locale", "expired_ts", "module", "config",
    "destination_min_retry_interval", "destination_retry_multiplier",
    "destination_max_retry_interval", "client_timeout", "lease_timeout", "poll_interval",
]  # fmt: skip


@pytest.mark.parametrize("key", sorted(KNOWN_TOP_LEVEL_KEYS) + NESTED_KEYS)
def test_sample_documents_every_key(key: str) -> None:
    sample = (REPO_ROOT / "config.sample.yaml").read_text()
    # As a key: at a line start (after "#", "-" or indentation) or inside a {flow: mapping}.
    assert re.search(rf"(^|[\s{{#-]){re.escape(key)}:", sample, re.MULTILINE), key


def test_instance_name_and_worker_leases(parse_config: ParseConfig) -> None:
    default = parse_config()
    assert default.instance.instance_name  # host name and process ID
    assert default.instance.lease_timeout_ms == 20_000
    config = parse_config(
        instance_name="worker1", worker_leases={"lease_timeout": 5, "poll_interval": "250ms"}
    )
    assert config.instance.instance_name == "worker1"
    assert (config.instance.lease_timeout_ms, config.instance.poll_interval_seconds) == (5000, 0.25)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (None, (3, 65536, 4)),
        ({"time_cost": 1, "memory_cost": 8, "parallelism": 1}, (1, 8, 1)),
        ({"time_cost": 5}, (5, 65536, 4)),
    ],
)
def test_password_hashing(
    parse_config: ParseConfig, section: dict[str, Any] | None, expected: tuple[int, int, int]
) -> None:
    config = parse_config(**({} if section is None else {"password_hashing": section}))
    hashing = config.registration.password_hashing
    assert (hashing.time_cost, hashing.memory_cost, hashing.parallelism) == expected


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"time_cost": 0}, "password_hashing.time_cost"),
        ({"memory_cost": 7, "parallelism": 1}, "password_hashing.memory_cost"),
        ({"memory_cost": 16, "parallelism": 4}, "password_hashing.memory_cost"),
        ({"parallelism": 0}, "password_hashing.parallelism"),
        ({"time_cost": "fast"}, "password_hashing.time_cost"),
    ],
)
def test_password_hashing_refuses_bad_values(
    parse_config: ParseConfig, section: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(password_hashing=section)
    assert key in str(raised.value)
