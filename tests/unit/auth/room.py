"""A small builder of test rooms whose state is set directly, for checking one event at a time.

Only the event under test goes through the auth rules; the state around it is arranged without
checks, so a case can start from any situation (a banned user, a knock in v6, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from homeserver.auth.rules import AuthError, check_event_auth
from homeserver.auth.selection import auth_types_for_event
from homeserver.events.event import Event
from homeserver.events.state_keys import CREATE_KEY
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from tests.factories import RoomFactory

CREATOR = "@creator:example.org"
ALICE = "@alice:example.org"
BOB = "@bob:example.org"
CAROL = "@carol:example.org"
RITA = "@rita:remote.org"

ALL_VERSIONS = list(KNOWN_ROOM_VERSIONS)


def versions_where(predicate: Any) -> list[str]:
    return [v.identifier for v in KNOWN_ROOM_VERSIONS.values() if predicate(v)]


def default_power_levels(version: RoomVersion, users: Mapping[str, int] = {}) -> dict[str, Any]:
    """The creator at 100 (v1-v11; v12 creators must not be listed) plus ``users``."""
    listed = {} if version.creators_have_infinite_power else {CREATOR: 100}
    return {"users": {**listed, **users}}


class Room:
    def __init__(
        self,
        version_id: str,
        *,
        bare: bool = False,
        create_content: Mapping[str, Any] | None = None,
        users: Mapping[str, int] = {},
        power_levels: Mapping[str, Any] | str | None = "default",
        join_rule: str | None = "invite",
        members: Mapping[str, str] = {},
        state: Iterable[tuple[str, str, str, dict[str, Any]]] = (),
    ) -> None:
        """``bare``: the create event only. Otherwise the creator's join, power levels (the
        defaults plus ``users``, or ``power_levels`` itself, or none), join rules, then the
        ``members`` (user -> membership), then extra ``state`` (type, key, sender, content)."""
        self.version = KNOWN_ROOM_VERSIONS[version_id]
        self.factory = RoomFactory(self.version)
        self.create = self.factory.create(CREATOR, dict(create_content or {}))
        self.events: dict[str, Event] = {self.create.event_id: self.create}
        self.state: dict[tuple[str, str], Event] = {CREATE_KEY: self.create}
        self.last = self.create
        if bare:
            return
        self.put(self.member(CREATOR, "join"))
        if power_levels == "default":
            power_levels = default_power_levels(self.version, users)
        if power_levels is not None:
            self.put(self.event("m.room.power_levels", CREATOR, dict(power_levels), state_key=""))
        if join_rule is not None:
            content = {"join_rule": join_rule}
            self.put(self.event("m.room.join_rules", CREATOR, content, state_key=""))
        for user, membership in members.items():
            sender = user if membership in ("join", "knock", "leave") else CREATOR
            self.put(self.member(sender, membership, user))
        for event_type, state_key, sender, content in state:
            self.put(self.event(event_type, sender, content, state_key=state_key))

    def put(self, event: Event) -> Event:
        self.events[event.event_id] = event
        self.state[event.state_tuple] = event
        self.last = event
        return event

    def event(
        self,
        event_type: str,
        sender: str,
        content: Mapping[str, Any] | None = None,
        *,
        state_key: str | None = None,
        prev: list[Event] | None = None,
        auth: list[Event] | None = None,
        **kw: Any,
    ) -> Event:
        """An event citing the auth events the selection picks from the current state."""
        content = dict(content or {})
        if auth is None:
            keys = auth_types_for_event(self.version, event_type, sender, state_key, content)
            auth = [self.state[key] for key in keys if key in self.state]
        prev = [self.last] if prev is None else prev
        event = self.factory.event(
            event_type, sender, content, state_key=state_key, prev=prev, auth=auth, **kw
        )
        self.events[event.event_id] = event
        return event

    def member(
        self, sender: str, membership: str, target: str | None = None, **content: Any
    ) -> Event:
        body = {"membership": membership, **content}
        return self.event("m.room.member", sender, body, state_key=target or sender)

    def outcome(self, event: Event) -> str | None:
        """None if ``event`` is allowed, else the reason it was refused."""
        auth_events = [self.events[i] for i in event.auth_event_ids() if i in self.events]
        try:
            check_event_auth(self.version, event, auth_events, create_event=self.create)
        except AuthError as e:
            return e.reason
        return None


def assert_outcome(room: Room, event: Event, expect: str | None) -> None:
    """``expect`` None: allowed; else the refusal's reason must contain ``expect``."""
    reason = room.outcome(event)
    if expect is None:
        assert reason is None, f"refused: {reason}"
    else:
        assert reason is not None, f"allowed, expected refusal for {expect!r}"
        assert expect in reason, f"refused for {reason!r}, expected {expect!r}"


def member(sender: str, membership: str, target: str | None = None, **content: Any) -> Any:
    """A table entry: make this member event in the case's room."""
    return lambda room: room.member(sender, membership, target, **content)


def ev(
    event_type: str,
    sender: str,
    content: Mapping[str, Any] | None = None,
    state_key: str | None = None,
    **kw: Any,
) -> Any:
    """A table entry: make this event in the case's room."""
    return lambda room: room.event(event_type, sender, content, state_key=state_key, **kw)


def cases(
    name: str, versions: Iterable[str], room: Mapping[str, Any], make: Any, expect: str | None
) -> list[Any]:
    """One pytest case per room version: (version, room kwargs, event maker, expectation)."""
    verdict = "ok" if expect is None else "refused"
    return [pytest.param(v, room, make, expect, id=f"{name}-v{v}-{verdict}") for v in versions]


def run_case(version: str, room_kwargs: Mapping[str, Any], make: Any, expect: str | None) -> None:
    room = Room(version, **room_kwargs)
    assert_outcome(room, make(room), expect)
