"""A failing or stuck subscriber of the domain-event bus (the audit log, an operator module)
never fails or holds up the room operation that published."""

from __future__ import annotations

import asyncio
import logging

import pytest

from homeserver.rooms import audit
from homeserver.rooms.bus import ROOM_CREATED, ROOM_UPGRADED, DomainEvent
from tests.harness import TestServer as Server


def _broken(event: DomainEvent) -> None:
    raise RuntimeError(f"operator module bug on {event.name}")


async def _broken_async(event: DomainEvent) -> None:
    await asyncio.sleep(0)
    raise ValueError("async operator module bug")


async def _create_and_upgrade(server: Server) -> tuple[str, str]:
    alice = await server.register("alice")
    status, created = await server.call("POST", "/createRoom", alice, json={"room_version": "10"})
    assert status == 200, created
    room_id = created["room_id"]
    status, upgraded = await server.call(
        "POST", f"/rooms/{room_id}/upgrade", alice, json={"new_version": "11"}
    )
    assert status == 200, upgraded
    return room_id, upgraded["replacement_room"]


async def test_failing_subscribers_and_audit_log_do_not_fail_the_operation(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def audit_broken(*args: object, **kwargs: object) -> None:
        raise OSError("audit log disk full")

    monkeypatch.setattr(audit.audit_logger, "info", audit_broken)
    # The audit line is only built when its logger writes INFO (the server's default level).
    caplog.set_level(logging.INFO, logger=audit.audit_logger.logger.name)
    seen: list[str] = []
    server.hs.bus.subscribe(_broken)
    server.hs.bus.subscribe(_broken_async)
    server.hs.bus.subscribe(lambda event: seen.append(event.name))

    old_room, new_room = await _create_and_upgrade(server)

    assert (await server.hs.store.rooms.get_room(old_room)) is not None
    assert (await server.hs.store.rooms.get_room(new_room)) is not None
    # Later subscribers still heard about it, and each failure was logged.
    assert seen == [ROOM_CREATED, ROOM_UPGRADED]
    failures = [r for r in caplog.records if "subscriber" in r.getMessage()]
    assert len(failures) == 3 * 2  # audit, _broken, _broken_async, on each of the two events


async def test_a_stuck_subscriber_does_not_hold_up_the_operation(server: Server) -> None:
    release = asyncio.Event()
    reached: list[str] = []

    async def stuck(event: DomainEvent) -> None:
        reached.append(event.name)
        await release.wait()

    server.hs.bus.wait_seconds = 0.05
    server.hs.bus.subscribe(stuck)
    try:
        # A deadline only so that a bus that waits forever fails instead of hanging.
        await asyncio.wait_for(_create_and_upgrade(server), timeout=60)
        assert reached == [ROOM_CREATED, ROOM_UPGRADED]  # both answered while it was stuck
    finally:
        release.set()
        await asyncio.sleep(0)
