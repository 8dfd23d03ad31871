"""A small room builder for state-resolution tests.

A :class:`Branch` is one server's view of a room: its state map and its latest event. Each event
sent on a branch cites the auth events the spec selects from the branch's state and its head as
``prev_events``, and must pass the auth rules there (as a real server would insist), so every
scenario starts from events that were valid where they were created. ``fork()`` copies a branch
to model concurrent changes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from homeserver.auth.rules import check_event_auth
from homeserver.auth.selection import auth_types_for_event
from homeserver.auth.state_res import resolve_state
from homeserver.events.event import Event
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion, StateResAlgorithm
from tests.factories import RoomFactory

ALICE = "@alice:example.org"
BOB = "@bob:example.org"
CAROL = "@carol:example.org"
DAVE = "@dave:example.org"

StateKey = tuple[str, str]
PL_KEY: StateKey = ("m.room.power_levels", "")
JR_KEY: StateKey = ("m.room.join_rules", "")
TOPIC_KEY: StateKey = ("m.room.topic", "")

ALL_VERSIONS = list(KNOWN_ROOM_VERSIONS.values())
V2_FAMILY = [v for v in ALL_VERSIONS if v.state_res is not StateResAlgorithm.V1]


def member_key(user_id: str) -> StateKey:
    return ("m.room.member", user_id)


class Room:
    """All events of one test room, and a ``fetch_events`` over them."""

    def __init__(self, room_version: RoomVersion) -> None:
        self.version = room_version
        self.factory = RoomFactory(room_version)
        self.events: dict[str, Event] = {}
        self.hidden: set[str] = set()
        self.fetch_calls: list[set[str]] = []
        self.create_event: Event | None = None

    async def fetch(self, event_ids: Collection[str]) -> Mapping[str, Event]:
        self.fetch_calls.append(set(event_ids))
        return {i: self.events[i] for i in event_ids if i in self.events and i not in self.hidden}

    async def resolve(self, *states: Mapping[StateKey, str]) -> dict[StateKey, str]:
        return await resolve_state(self.version, list(states), self.fetch)

    def power_levels(self, users: Mapping[str, int], **extra: Any) -> dict[str, Any]:
        """PL content; in v12 the creator (Alice) may not be listed, having infinite power."""
        listed = {
            user: level
            for user, level in users.items()
            if not (self.version.creators_have_infinite_power and user == ALICE)
        }
        content: dict[str, Any] = {
            "users": listed,
            "users_default": 0,
            "events": {},
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            "invite": 0,
        }
        content.update(extra)
        return content

    def genesis(
        self,
        users: Mapping[str, int] | None = None,
        members: Collection[str] = (),
        join_rule: str = "public",
    ) -> Branch:
        """Create (Alice), Alice's join, PL (``users``), join rules, then ``members`` join."""
        create = self.factory.create(ALICE)
        self.events[create.event_id] = create
        self.create_event = create
        branch = Branch(self, {create.state_tuple: create.event_id}, create)
        branch.member(ALICE, "join")
        branch.put("m.room.power_levels", ALICE, self.power_levels(users or {ALICE: 100}))
        branch.put("m.room.join_rules", ALICE, {"join_rule": "public"})
        for user in members:
            branch.member(user, "join")
        if join_rule != "public":
            branch.put("m.room.join_rules", ALICE, {"join_rule": join_rule})
        return branch


class Branch:
    def __init__(self, room: Room, state: dict[StateKey, str], head: Event) -> None:
        self.room = room
        self.state = state
        self.head = head

    def fork(self) -> Branch:
        return Branch(self.room, dict(self.state), self.head)

    def send(
        self,
        event_type: str,
        sender: str,
        content: dict[str, Any] | None = None,
        *,
        state_key: str | None = None,
        ts: int | None = None,
    ) -> Event:
        room = self.room
        content = content or {}
        keys = auth_types_for_event(room.version, event_type, sender, state_key, content)
        auth = [room.events[self.state[k]] for k in keys if k in self.state]
        event = room.factory.event(
            event_type,
            sender,
            content,
            state_key=state_key,
            prev=[self.head],
            auth=auth,
            origin_server_ts=ts,
        )
        # Refuse to build a scenario on an event its own server would have rejected.
        check_event_auth(room.version, event, auth, create_event=room.create_event)
        room.events[event.event_id] = event
        self.head = event
        if event.is_state():
            self.state[event.state_tuple] = event.event_id
        return event

    def put(
        self, event_type: str, sender: str, content: dict[str, Any], state_key: str = "", **kw: Any
    ) -> Event:
        return self.send(event_type, sender, content, state_key=state_key, **kw)

    def member(self, sender: str, membership: str, target: str | None = None, **kw: Any) -> Event:
        return self.send(
            "m.room.member", sender, {"membership": membership}, state_key=target or sender, **kw
        )

    def message(self, sender: str, body: str = "hi") -> Event:
        return self.send("m.room.message", sender, {"msgtype": "m.text", "body": body})

    def topic(self, sender: str, topic: str, **kw: Any) -> Event:
        return self.put("m.room.topic", sender, {"topic": topic}, **kw)
