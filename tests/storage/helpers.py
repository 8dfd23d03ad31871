"""A tiny driver for storage tests: builds a room's events with ``RoomFactory`` and persists them
the way the event sender will (prev events = forward extremities, state before = the room's
current state group)."""

from __future__ import annotations

from typing import Any

from homeserver.events.event import Event
from homeserver.room_versions import RoomVersion, get_room_version
from homeserver.storage import NewRoom, PersistResult, Store
from tests.factories import RoomFactory

ALICE = "@alice:example.org"


class StoredRoom:
    def __init__(self, store: Store, version: RoomVersion | str = "10") -> None:
        if isinstance(version, str):
            version = get_room_version(version)
        self.store = store
        self.factory = RoomFactory(version)
        self.create_event: Event | None = None
        self.events: list[Event] = []

    @property
    def room_id(self) -> str:
        assert self.factory.room_id is not None
        return self.factory.room_id

    async def genesis(self, creator: str = ALICE) -> list[Event]:
        """Create, the creator's join and power levels, persisted with the room row."""
        create = self.factory.create(creator)
        join = self.factory.member(creator, "join", prev=[create], auth=[create])
        power = self.factory.event(
            "m.room.power_levels",
            creator,
            {"users": {creator: 100}},
            state_key="",
            prev=[join],
            auth=[create, join],
        )
        batch = [create, join, power]
        await self.store.persist_events(
            [(e, None) for e in batch],
            new_room=NewRoom(self.room_id, self.factory.room_version.identifier, creator, 1000),
        )
        self.create_event = create
        self.events.extend(batch)
        return batch

    async def build(
        self, event_type: str, sender: str = ALICE, content: dict[str, Any] | None = None, **kw: Any
    ) -> Event:
        """An event on the current forward extremities (not persisted)."""
        extremities = await self.store.events.get_forward_extremities(self.room_id)
        prev = list((await self.store.events.get_events(extremities.event_ids)).values())
        kw.setdefault("auth", [self.create_event])
        return self.factory.event(
            event_type, sender, content, prev=prev, depth=extremities.max_depth + 1, **kw
        )

    async def send(
        self, event_type: str, sender: str = ALICE, content: dict[str, Any] | None = None, **kw: Any
    ) -> Event:
        event = await self.build(event_type, sender, content, **kw)
        await self.persist(event)
        return event

    async def persist(self, *events: Event) -> PersistResult:
        group = await self.store.state.get_current_state_group(self.room_id)
        batch = [(events[0], group)] + [(e, None) for e in events[1:]]
        result = await self.store.persist_events(batch)
        self.events.extend(events)
        return result

    async def join(self, user_id: str) -> Event:
        return await self.send("m.room.member", user_id, {"membership": "join"}, state_key=user_id)
