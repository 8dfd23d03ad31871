"""Helpers for to-device tests: a second device (with its own access token) for a user, and
sending through PUT /sendToDevice."""

from __future__ import annotations

import secrets
from typing import Any

from homeserver.storage.users import hash_access_token
from tests.harness import TestServer, TestUser


async def add_device(server: TestServer, user: TestUser, device_id: str) -> TestUser:
    """Log ``user`` in on another device."""
    await server.hs.store.users.upsert_device(user.user_id, device_id)
    token = secrets.token_urlsafe(32)
    await server.hs.store.users.add_access_token(
        hash_access_token(token), user.user_id, device_id, created_ts=server.hs.clock()
    )
    return TestUser(user.user_id, token, device_id)


async def send_to_device(
    server: TestServer,
    sender: TestUser,
    messages: Any,
    *,
    event_type: str = "m.test",
    txn_id: str | None = None,
    expect: int = 200,
) -> Any:
    txn = txn_id or secrets.token_hex(6)
    status, body = await server.call(
        "PUT", f"/sendToDevice/{event_type}/{txn}", sender, json={"messages": messages}
    )
    assert status == expect, body
    return body


def to_device_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = response["to_device"]["events"]
    return events
