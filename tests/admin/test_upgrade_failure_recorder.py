"""The bus subscriber that records server-side upgrade failures: it records those, ignores the
rest, and gives the bus nothing to wait for when it ignores an event (every room created)."""

from __future__ import annotations

from homeserver.admin.lifecycle import UpgradeFailureRecorder
from homeserver.rooms.bus import ROOM_CREATED, ROOM_UPGRADE_FAILED, DomainEvent, DomainEventBus
from homeserver.storage import Store

ROOM = "!room:example.org"


async def test_records_server_side_failures_and_ignores_the_rest(store: Store) -> None:
    recorder = UpgradeFailureRecorder(store.upgrade_audit, lambda: 1_000)
    assert recorder(DomainEvent(ROOM_CREATED, {"room_id": ROOM})) is None
    refused = DomainEvent(ROOM_UPGRADE_FAILED, {"room_id": ROOM, "reason": "forbidden"})
    assert recorder(refused) is None  # a client's refusal, not the server's failure
    assert recorder(DomainEvent(ROOM_UPGRADE_FAILED, {"room_id": "nonsense"})) is None

    bus = DomainEventBus()
    bus.subscribe(recorder)
    await bus.publish(ROOM_CREATED, room_id=ROOM)
    await bus.publish(ROOM_UPGRADE_FAILED, room_id=ROOM, reason="internal")
    [failure] = await store.upgrade_audit.get_recent_failures(10)
    assert (failure.room_id, failure.reason, failure.ts) == (ROOM, "internal", 1_000)
