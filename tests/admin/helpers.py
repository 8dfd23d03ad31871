"""Shared helpers of the admin API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from tests.harness import TestServer, TestUser, make_config

HIGH_LIMIT = {"per_second": 1000, "burst_count": 1000}
V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


def admin_config(tmp_path: Path) -> HomeserverConfig:
    """Limits high enough that a test creating many rooms or joins never meets one."""
    return make_config(
        tmp_path,
        rc_room_creation=HIGH_LIMIT,
        rc_joins={"local": HIGH_LIMIT, "remote": HIGH_LIMIT},
        rc_login=HIGH_LIMIT,
        rc_invites=HIGH_LIMIT,
        rc_to_device=HIGH_LIMIT,
    )


async def create_room(server: TestServer, user: TestUser, **body: Any) -> str:
    status, answer = await server.call("POST", "/createRoom", user, json=body)
    assert status == 200, answer
    room_id: str = answer["room_id"]
    return room_id


async def join(server: TestServer, user: TestUser, room_id: str) -> None:
    status, answer = await server.call("POST", f"/rooms/{room_id}/join", user, json={})
    assert status == 200, answer


@pytest.fixture
async def deletions_finish(hs: Homeserver) -> AsyncIterator[None]:
    """No room deletion may still be running when the test's database closes (use it with
    ``pytest.mark.usefixtures``)."""
    yield
    await hs.room_deletion.wait_idle()
