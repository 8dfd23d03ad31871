"""Backoff per destination (homeserver/federation/retry.py) and the ``federation:`` config
section it reads (Synapse's keys and defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import ConfigError, HomeserverConfig
from homeserver.config.federation import FederationConfig
from homeserver.federation.retry import after_failure, healthy, is_due, next_retry_interval
from homeserver.storage.outbox import RetryState

MINUTE = 60_000
WEEK = 7 * 24 * 60 * MINUTE


def parse(tmp_path: Path, **data: Any) -> FederationConfig:
    return HomeserverConfig.parse({"server_name": "test.example", **data}, tmp_path).federation


def test_synapse_defaults(tmp_path: Path) -> None:
    config = parse(tmp_path)
    assert config.destination_min_retry_interval_ms == 10 * MINUTE
    assert config.destination_retry_multiplier == 2
    assert config.destination_max_retry_interval_ms == WEEK
    assert config.client_timeout_ms == 60_000


@pytest.mark.parametrize(
    ("value", "ms"),
    [("10m", 10 * MINUTE), ("1w", WEEK), ("7d", WEEK), ("30s", 30_000), (250, 250), ("5ms", 5)],
)
def test_durations_as_synapse_reads_them(tmp_path: Path, value: Any, ms: int) -> None:
    config = parse(
        tmp_path,
        federation={"destination_min_retry_interval": value, "client_timeout": value},
    )
    assert config.destination_min_retry_interval_ms == ms
    assert config.client_timeout_ms == ms


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"destination_min_retry_interval": "soon"}, "federation.destination_min_retry_interval"),
        ({"destination_retry_multiplier": 0.5}, "federation.destination_retry_multiplier"),
        ({"client_timeout": -1}, "federation.client_timeout"),
        (
            {"destination_min_retry_interval": "2h", "destination_max_retry_interval": "1h"},
            "federation.destination_max_retry_interval",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, federation=section)
    assert info.value.key_path == key


def test_unknown_keys_warn(tmp_path: Path) -> None:
    config = HomeserverConfig.parse(
        {"server_name": "test.example", "federation": {"max_long_retries": 3}}, tmp_path
    )
    assert any("federation.max_long_retries" in w for w in config.warnings)


CONFIG = FederationConfig(
    federation_verify_certificates=True,
    ip_range_blacklist=(),
    ip_range_whitelist=(),
    federation_domain_whitelist=None,
    destination_min_retry_interval_ms=1000,
    destination_retry_multiplier=2.0,
    destination_max_retry_interval_ms=5000,
)


def test_backoff_grows_and_caps() -> None:
    waits = []
    state = None
    for now in (100, 200, 300, 400, 500):
        state = after_failure(state, "a.org", now, CONFIG, jitter=lambda: 1.0)
        waits.append(state.retry_interval_ms)
    assert waits == [1000, 2000, 4000, 5000, 5000]
    assert state is not None
    # failing since the first failure; the wait counts from the last one
    assert (state.failure_ts, state.retry_last_ts, state.next_attempt_ts) == (100, 500, 5500)


@pytest.mark.parametrize(("jitter", "expected"), [(0.8, 1600), (1.4, 2800)])
def test_jitter_is_synapses_range(jitter: float, expected: int) -> None:
    assert next_retry_interval(1000, CONFIG, lambda: jitter) == expected


def test_due() -> None:
    assert is_due(None, 0)
    assert is_due(healthy("a.org"), 0)
    waiting = RetryState("a.org", 10, 10, 1000)
    assert not is_due(waiting, 1009)
    assert is_due(waiting, 1010)
