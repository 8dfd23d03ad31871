"""What a space hierarchy or a room summary says about one room, and who may see it (spec:
client-server "Spaces", server-server "Spaces"; MSC3266; Synapse's ``RoomSummaryHandler``).

A room is shown to a user when it is public or knockable (in a version that has knocking),
world-readable, restricted to a room the user is joined to, or the user is joined or invited.
Over federation, a server sees a room that is public, knockable or world-readable; a restricted
room when one of its users is joined to an allowed room; any other room when one of its users
is joined or invited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.events.event import Event
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.restricted import allowed_room_ids, allows_knock, is_restricted
from homeserver.storage import Store
from homeserver.storage.hierarchy import RoomView
from homeserver.types import domain_of, room_id_error

SPACE = "m.space"
#: the longest ``order`` a child link may give (spec); a longer or non-ASCII one is ignored.
MAX_ORDER_LENGTH = 50


# --- pure rules ------------------------------------------------------------------------------
def valid_via(content: dict[str, Any]) -> bool:
    """A child link counts only with a non-empty ``via`` list of strings (spec)."""
    via = content.get("via")
    return isinstance(via, list) and bool(via) and all(isinstance(v, str) and v for v in via)


def _order(content: dict[str, Any]) -> str | None:
    order = content.get("order")
    if (
        not isinstance(order, str)
        or len(order) > MAX_ORDER_LENGTH
        or not all(0x20 <= ord(c) <= 0x7E for c in order)
    ):
        return None
    return order


def ordered_children(children: Iterable[Event], *, suggested_only: bool) -> list[Event]:
    """The live child links in the spec's order: by ``order`` (links without one last), then
    ``origin_server_ts``, then the child's room ID."""
    live = [
        e
        for e in children
        if e.state_key is not None
        and room_id_error(e.state_key) is None
        and valid_via(e.content)
        and (not suggested_only or e.content.get("suggested") is True)
    ]
    return sorted(
        live,
        key=lambda e: (
            _order(e.content) is None,
            _order(e.content) or "",
            e.origin_server_ts,
            e.state_key or "",
        ),
    )


def stripped_child(event: Event) -> dict[str, Any]:
    """A ``children_state`` entry (spec "StrippedChildStateEvent")."""
    return {
        "type": event.type,
        "state_key": event.state_key,
        "content": event.content,
        "sender": event.sender,
        "origin_server_ts": event.origin_server_ts,
    }


def _content(view: RoomView, event_type: str) -> dict[str, Any]:
    event = view.state.get(event_type)
    return event.content if event is not None else {}


def room_entry(view: RoomView, *, for_federation: bool) -> dict[str, Any]:
    """A room's summary (spec "RoomSummary"/"SpaceHierarchyRoomsChunk" without
    ``children_state``); absent optional fields are left out. Other servers also get
    ``allowed_room_ids`` of a restricted room, to judge its users' access themselves."""
    join_rule = _content(view, "m.room.join_rules").get("join_rule")
    entry: dict[str, Any] = {
        "room_id": view.room_id,
        "num_joined_members": view.joined_members,
        "world_readable": _content(view, "m.room.history_visibility").get("history_visibility")
        == "world_readable",
        "guest_can_join": _content(view, "m.room.guest_access").get("guest_access") == "can_join",
        "room_version": view.room_version,
    }
    optional = {
        "name": _content(view, "m.room.name").get("name"),
        "topic": _content(view, "m.room.topic").get("topic"),
        "canonical_alias": _content(view, "m.room.canonical_alias").get("alias"),
        "avatar_url": _content(view, "m.room.avatar").get("url"),
        "join_rule": join_rule,
        "room_type": _content(view, "m.room.create").get("type"),
        "encryption": _content(view, "m.room.encryption").get("algorithm"),
    }
    for key, value in optional.items():
        if isinstance(value, str) and value:
            entry[key] = value
    if for_federation:
        version = KNOWN_ROOM_VERSIONS.get(view.room_version)
        if version is not None and is_restricted(version, join_rule):
            allowed = allowed_room_ids(_content(view, "m.room.join_rules"))
            if allowed:
                entry["allowed_room_ids"] = allowed
    return entry


def openly_visible(view: RoomView) -> bool:
    """Public, knockable or world-readable: anyone may see the summary."""
    join_rule = _content(view, "m.room.join_rules").get("join_rule")
    version = KNOWN_ROOM_VERSIONS.get(view.room_version)
    if join_rule == "public" or (version is not None and allows_knock(version, join_rule)):
        return True
    return _content(view, "m.room.history_visibility").get("history_visibility") == (
        "world_readable"
    )


@dataclass(slots=True)
class Summary:
    """One room as a walk sees it: its entry and, for a space, its ordered child links."""

    room_id: str
    entry: dict[str, Any]
    children: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self, *, for_client: bool) -> dict[str, Any]:
        result = dict(self.entry)
        if for_client:
            result.pop("allowed_room_ids", None)
        result["children_state"] = list(self.children)
        return result


@dataclass(frozen=True, slots=True)
class RemoteAnswer:
    """Another server's ``/hierarchy`` answer, checked: the room, its accessible children's
    entries by room ID, and the children it says we may not see."""

    room: Summary
    children: dict[str, dict[str, Any]]
    inaccessible: frozenset[str]


#: asks the servers ``via`` about a room we are not in: ``(room_id, via, suggested_only)``;
#: None when none answered usably.
RemoteFetcher = Callable[[str, Sequence[str], bool], Awaitable[RemoteAnswer | None]]


# --- against our state -----------------------------------------------------------------------
class LocalSummaries:
    """Summaries of rooms this server is in, and the access rules against its state."""

    def __init__(self, store: Store, server_name: str) -> None:
        self.store = store
        self.server_name = server_name

    async def is_resident(self, room_id: str) -> bool:
        return await self.store.state.is_host_joined(room_id, self.server_name)

    async def view(self, room_id: str) -> RoomView | None:
        return await self.store.hierarchy.get_room_view(room_id)

    async def user_in_any(self, user_id: str, room_ids: Iterable[str]) -> bool:
        wanted = set(room_ids)
        if not wanted:
            return False
        return bool(wanted & set(await self.store.state.get_rooms_for_user(user_id)))

    async def membership(self, room_id: str, user_id: str) -> str | None:
        """The user's membership: from the room's state, else (a room we are not in) the
        invite or rejection held out of band."""
        event = await self.store.state.get_current_state_event(room_id, "m.room.member", user_id)
        if event is not None:
            return event.membership
        held = await self.store.out_of_band.get(user_id, room_id)
        return held.membership if held is not None else None

    async def accessible(self, view: RoomView, *, user_id: str | None, origin: str | None) -> bool:
        """Whether ``user_id`` (a local user) or ``origin`` (a server) may see the room."""
        if openly_visible(view):
            return True
        join_rules = _content(view, "m.room.join_rules")
        version = KNOWN_ROOM_VERSIONS.get(view.room_version)
        if version is not None and is_restricted(version, join_rules.get("join_rule")):
            allowed = allowed_room_ids(join_rules)
            if user_id is not None and await self.user_in_any(user_id, allowed):
                return True
            if origin is not None:
                for room_id in allowed:
                    if "join" in await self.store.hierarchy.memberships_of_server(room_id, origin):
                        return True
        elif origin is not None:
            held = await self.store.hierarchy.memberships_of_server(view.room_id, origin)
            if held & {"join", "invite"}:
                return True
        if user_id is not None:
            return await self.membership(view.room_id, user_id) in ("join", "invite")
        return False

    async def summarise(
        self,
        room_id: str,
        *,
        user_id: str | None,
        origin: str | None,
        suggested_only: bool,
        include_children: bool = True,
    ) -> Summary | None:
        """The room's summary when it is known here and accessible, else None."""
        view = await self.view(room_id)
        if view is None or not view.state:
            return None
        if not await self.accessible(view, user_id=user_id, origin=origin):
            return None
        entry = room_entry(view, for_federation=origin is not None)
        summary = Summary(room_id, entry)
        if include_children and entry.get("room_type") == SPACE:
            children = ordered_children(view.children, suggested_only=suggested_only)
            summary.children = [stripped_child(e) for e in children]
        return summary

    async def remote_entry_accessible(
        self, user_id: str | None, room_id: str, entry: dict[str, Any]
    ) -> bool:
        """Whether the user may see a room another server described (Synapse: the server
        answered for itself; the user's own standing is judged here)."""
        join_rule = entry.get("join_rule", "public")
        if join_rule in ("public", "knock", "knock_restricted"):
            return True
        if entry.get("world_readable") is True:
            return True
        allowed = entry.get("allowed_room_ids")
        if user_id is not None and isinstance(allowed, list):
            rooms = [r for r in allowed if isinstance(r, str)]
            if await self.user_in_any(user_id, rooms):
                return True
        view = await self.view(room_id)
        if view is None or not view.state:
            return user_id is not None and bool(await self.invited_from(room_id, user_id))
        return await self.accessible(view, user_id=user_id, origin=None)

    async def invited_from(self, room_id: str, user_id: str) -> list[str]:
        """For a room we have no state of, the servers to ask about it when the user holds an
        invite to it (the inviter's, then the room ID's); empty when there is no invite."""
        held = await self.store.out_of_band.get(user_id, room_id)
        if held is None or held.membership != "invite":
            return []
        event = await self.store.events.get_event(held.event_id)
        servers = [domain_of(event.sender)] if event is not None else []
        return list(dict.fromkeys([*servers, domain_of(room_id)]))
