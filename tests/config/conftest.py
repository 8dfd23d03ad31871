"""Fixtures for config, key-storage and CLI tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig

ParseConfig = Callable[..., HomeserverConfig]


@pytest.fixture
def parse_config(tmp_path: Path) -> ParseConfig:
    """``parse_config(key=value, ...)``: a minimal valid config plus the given top-level keys,
    parsed relative to ``tmp_path``."""

    def parse(**overrides: Any) -> HomeserverConfig:
        data: dict[str, Any] = {"server_name": "example.com", **overrides}
        return HomeserverConfig.parse(data, tmp_path)

    return parse
