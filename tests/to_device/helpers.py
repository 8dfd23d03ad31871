"""Helpers for to-device tests: sending through PUT /sendToDevice (a user's second device is
``server.login_device``)."""

from __future__ import annotations

import secrets
from typing import Any

from tests.harness import TestServer, TestUser


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
