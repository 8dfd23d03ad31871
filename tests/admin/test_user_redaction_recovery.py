"""Start-up recovery of "redact a user's events" requests with several processes over one
database: a process fails only what its own previous run and dead processes left unfinished."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.admin.user_redaction import UserRedactions
from homeserver.clock import time_ms
from homeserver.storage import Store

pytestmark = pytest.mark.asyncio


async def statuses(store: Store) -> dict[str, str]:
    rows = await store.db.fetchall("SELECT redact_id, status FROM user_redactions")
    return {str(row[0]): str(row[1]) for row in rows}


@pytest.mark.parametrize(
    ("alive", "expected_b"),
    [({"b"}, "scheduled"), (set(), "failed")],
    ids=["other-process-alive", "other-process-dead"],
)
async def test_recover_fails_only_own_and_dead_processes_requests(
    store: Store, alive: set[str], expected_b: str
) -> None:
    data = store.admin_user_data
    await data.create_redaction("mine", "@u:test", 1, "a")
    await data.create_redaction("theirs", "@v:test", 1, "b")
    await data.create_redaction("done", "@w:test", 1, "b")
    await data.update_redaction("done", "complete")

    async def instance_alive(name: str) -> bool:
        return name == "a" or name in alive

    room_events: Any = None
    redactions = UserRedactions(store, room_events, "test", time_ms, "a", instance_alive)
    await redactions.recover()
    assert await statuses(store) == {"mine": "failed", "theirs": expected_b, "done": "complete"}
