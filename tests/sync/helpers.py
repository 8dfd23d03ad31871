"""Calls of /sync and readers of its answer (rooms and their events come from
tests/builders.py)."""

from __future__ import annotations

from typing import Any

from tests.harness import TestServer, TestUser


async def sync(
    server: TestServer, user: TestUser, *, expect: int = 200, **params: str
) -> dict[str, Any]:
    status, body = await server.call("GET", "/sync", user, params=params)
    assert status == expect, body
    return body


def timeline_bodies(response: dict[str, Any], room_id: str) -> list[str]:
    events = response["rooms"]["join"][room_id]["timeline"]["events"]
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


def state_types(section: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in section["state"]["events"]}
