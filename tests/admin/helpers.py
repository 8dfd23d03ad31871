"""Shared helpers of the admin API tests (rooms and generous rate limits come from
tests/builders.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from homeserver.app import Homeserver
from tests.harness import TestServer, TestUser

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


async def join(server: TestServer, user: TestUser, room_id: str) -> None:
    status, answer = await server.call("POST", f"/rooms/{room_id}/join", user, json={})
    assert status == 200, answer


@pytest.fixture
async def deletions_finish(hs: Homeserver) -> AsyncIterator[None]:
    """No room deletion may still be running when the test's database closes (use it with
    ``pytest.mark.usefixtures``)."""
    yield
    await hs.room_deletion.wait_idle()
