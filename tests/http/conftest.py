"""An in-process homeserver (no database yet) and an aiohttp test client for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from signedjson.key import generate_signing_key

from homeserver.app import Homeserver, create_app
from homeserver.config import HomeserverConfig
from homeserver.storage import Store

#: The fixed wall clock of in-process tests (ms since the epoch).
FIXED_NOW_MS = 1_700_000_000_000

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def homeserver(tmp_path: Path, store: Store) -> Homeserver:
    config = HomeserverConfig.parse({"server_name": "test.example"}, tmp_path)
    return Homeserver(config, generate_signing_key("a_test"), store, clock=lambda: FIXED_NOW_MS)


@pytest.fixture
async def client(homeserver: Homeserver, aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(homeserver))
