"""Unsigned events for tests of the pure rules (auth, state resolution).

``RoomFactory`` keeps a room's version and ID, and makes events whose IDs follow the version's
format: v1/v2 carry ``$n:server``, v3+ compute their reference hash, and in v12 the room ID is
derived from the create event. Hashes and signatures are placeholders: the rules under test
never look at them.
"""

from __future__ import annotations

import itertools
from typing import Any

from homeserver.events.event import Event
from homeserver.room_versions import RoomVersion

_counter = itertools.count(1)


def make_pdu(
    room_version: RoomVersion,
    *,
    event_type: str,
    sender: str,
    content: dict[str, Any] | None = None,
    state_key: str | None = None,
    room_id: str | None,
    prev_events: list[str] = (),  # type: ignore[assignment]
    auth_events: list[str] = (),  # type: ignore[assignment]
    depth: int = 1,
    origin_server_ts: int | None = None,
    redacts: str | None = None,
) -> dict[str, Any]:
    n = next(_counter)
    pdu: dict[str, Any] = {
        "type": event_type,
        "sender": sender,
        "content": dict(content or {}),
        "depth": depth,
        "origin_server_ts": origin_server_ts if origin_server_ts is not None else 1_000_000 + n,
        "hashes": {"sha256": "x"},
        "signatures": {sender.split(":", 1)[1]: {"ed25519:a": "sig"}},
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    if state_key is not None:
        pdu["state_key"] = state_key
    if room_version.event_refs_carry_hashes:
        server = sender.split(":", 1)[1]
        pdu["event_id"] = f"${n}:{server}"
        pdu["prev_events"] = [[e, {"sha256": "x"}] for e in prev_events]
        pdu["auth_events"] = [[e, {"sha256": "x"}] for e in auth_events]
    else:
        pdu["prev_events"] = list(prev_events)
        pdu["auth_events"] = list(auth_events)
    if redacts is not None:
        if room_version.top_level_redacts:
            pdu["redacts"] = redacts
        else:
            pdu["content"]["redacts"] = redacts
    return pdu


class RoomFactory:
    """Makes the events of one test room. ``create()`` must be called first."""

    def __init__(self, room_version: RoomVersion, server: str = "example.org") -> None:
        self.room_version = room_version
        self.server = server
        self.room_id: str | None = (
            None if room_version.room_id_is_create_event_hash else f"!room:{server}"
        )

    def create(self, creator: str, content: dict[str, Any] | None = None, **kw: Any) -> Event:
        body = dict(content or {})
        body.setdefault("room_version", self.room_version.identifier)
        if not self.room_version.implicit_room_creator:
            body.setdefault("creator", creator)
        pdu = make_pdu(
            self.room_version,
            event_type="m.room.create",
            sender=creator,
            content=body,
            state_key="",
            room_id=self.room_id,
            **kw,
        )
        event = Event(pdu, self.room_version)
        if self.room_id is None:
            self.room_id = event.room_id
        return event

    def event(
        self,
        event_type: str,
        sender: str,
        content: dict[str, Any] | None = None,
        *,
        state_key: str | None = None,
        prev: list[Event] = (),  # type: ignore[assignment]
        auth: list[Event] = (),  # type: ignore[assignment]
        depth: int | None = None,
        origin_server_ts: int | None = None,
        redacts: str | None = None,
        room_id: str | None = None,
    ) -> Event:
        if depth is None:
            depth = max((e.depth for e in prev), default=0) + 1
        pdu = make_pdu(
            self.room_version,
            event_type=event_type,
            sender=sender,
            content=content,
            state_key=state_key,
            room_id=room_id or self.room_id,
            prev_events=[e.event_id for e in prev],
            auth_events=[e.event_id for e in auth],
            depth=depth,
            origin_server_ts=origin_server_ts,
            redacts=redacts,
        )
        return Event(pdu, self.room_version)

    def member(self, sender: str, membership: str, target: str | None = None, **kw: Any) -> Event:
        content = {"membership": membership, **kw.pop("extra_content", {})}
        return self.event("m.room.member", sender, content, state_key=target or sender, **kw)
