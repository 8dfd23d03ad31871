"""What the matrix-nio tests share: a config that lets two or three clients register and talk
without tripping rate limits, registration, and syncing until something arrives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nio import AsyncClient, RegisterResponse, SyncResponse

RELAXED_LIMIT = {"per_second": 100, "burst_count": 100}
NIO_CONFIG: dict[str, Any] = {
    "enable_registration": True,
    "enable_registration_without_verification": True,
    "rc_room_creation": RELAXED_LIMIT,
    "rc_message": RELAXED_LIMIT,
    "rc_registration": RELAXED_LIMIT,
    "rc_joins": {"local": RELAXED_LIMIT},
    "rc_invites": RELAXED_LIMIT,
    "rc_to_device": RELAXED_LIMIT,
}


async def register(base_url: str, server_name: str, name: str) -> AsyncClient:
    client = AsyncClient(base_url, f"@{name}:{server_name}")
    response = await client.register(name, f"{name}-password-123", device_name=f"{name}'s nio")
    assert isinstance(response, RegisterResponse), response
    assert client.access_token
    return client


async def sync_until(
    client: AsyncClient, predicate: Callable[[SyncResponse], bool], attempts: int = 20
) -> SyncResponse:
    for _ in range(attempts):
        response = await client.sync(timeout=3000)
        assert isinstance(response, SyncResponse), response
        if predicate(response):
            return response
    raise AssertionError("the expected sync never came")
