from __future__ import annotations

from homeserver.rooms.bus import ROOM_CREATED, DomainEvent, DomainEventBus


async def test_failing_subscriber_does_not_stop_the_others():
    bus = DomainEventBus()
    seen: list[DomainEvent] = []

    def broken(event: DomainEvent) -> None:
        raise RuntimeError("boom")

    async def recorder(event: DomainEvent) -> None:
        seen.append(event)

    bus.subscribe(broken)
    bus.subscribe(recorder)
    await bus.publish(ROOM_CREATED, room_id="!r:x", creator_id="@a:x")
    assert seen == [DomainEvent(ROOM_CREATED, {"room_id": "!r:x", "creator_id": "@a:x"})]
