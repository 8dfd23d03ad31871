"""The entry points every path that hands room events or state to a client goes through.

* :func:`check_read_access` — may the user read the room at all (``/messages``, ``/state``,
  ``/members``, ``/event``, ``/context``…), and up to where:

  - a joined member reads the room;
  - in a room that is ``world_readable`` now, anyone reads it (peeking, as Synapse), except
    that a member who left (and has not forgotten the room) pages ``/messages`` and reads the
    state only up to their leave, as Synapse bounds a departed user whatever the visibility;
    single events (``/event``, ``/context``) are judged by the per-event rule alone;
  - a former member (current membership ``leave`` or ``ban``) who was once joined reads the room
    as it was when their last stay ended: events up to that membership event, state as of it;
  - everyone else gets 403 ``M_FORBIDDEN``: strangers, invitees, a rejected invite, a ban
    without a join (Synapse lets the last two read up to their leave; the spec does not).

* :func:`filter_events_for_client` — which of a batch of events the user may see, each judged
  by :func:`homeserver.visibility.rules.event_visible` from the state *at* it. Events the user
  may not see are dropped (not redacted), as Synapse does for clients.

Cost: the state groups the events were sent in (the state before each) and what visibility
needs of them come from :mod:`homeserver.visibility.state_at`, shared with the server side: one
query per room that returns only the points where the group changes; each distinct group read
once (the state store's LRU caches them), the history-visibility and membership events of all
groups in one batch; ordinary events are judged once per (group, joined later) pair; and
"joined at some point at or after the event" comes from the user's own membership events (one
query per room) — never a state read per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.errors import Forbidden, NotFound
from homeserver.events.event import Event
from homeserver.events.state_keys import HISTORY_VISIBILITY
from homeserver.storage import Store
from homeserver.storage.state import StateMap
from homeserver.visibility.rules import (
    WORLD_READABLE,
    EventFacts,
    event_visible,
    state_visible_at,
)
from homeserver.visibility.state_at import group_facts, state_groups_at, state_groups_before

NOT_A_MEMBER = "You aren't a member of the room"
NOT_JOINED = "Getting joined members while not being a current member of the room is forbidden."
NOT_VISIBLE_AT = "You may not view the room's state at that point."


@dataclass(frozen=True, slots=True)
class ReadAccess:
    #: the requester's current membership (None: never had one).
    membership: str | None
    #: the last stream position the requester may read; None when unbounded.
    up_to: int | None = None
    #: the membership event that ended their access (state is read as of this event).
    until_event_id: str | None = None
    #: stream position of the requester's latest join event in the room (None: never joined).
    last_join: int | None = None
    #: where ``/messages`` stops even when single events are not bounded (a departed member
    #: of a ``world_readable`` room); None: at ``up_to``.
    pages_up_to: int | None = None

    def can_see(self, event: Event) -> bool:
        """Whether ``event`` lies within the stretch of the room the requester may read."""
        ordering = event.internal.stream_ordering
        return self.up_to is None or (ordering is not None and ordering <= self.up_to)

    @property
    def messages_up_to(self) -> int | None:
        """The last stream position ``/messages`` hands out (None: unbounded)."""
        return self.up_to if self.pages_up_to is None else self.pages_up_to

    def joined_at_or_after(self, position: int) -> bool:
        """Whether the requester was joined at some point at or after ``position``."""
        return self.membership == "join" or (
            self.last_join is not None and self.last_join >= position
        )


async def get_membership(store: Store, room_id: str, user_id: str) -> Event | None:
    """The user's current ``m.room.member`` event in the room, if any."""
    return await store.state.get_current_state_event(room_id, "m.room.member", user_id)


async def room_access(store: Store, room_id: str, user_id: str) -> ReadAccess | None:
    """What the user may read of the room (None: nothing). See the module's docstring."""
    member = await get_membership(store, room_id, user_id)
    membership = member.membership if member is not None else None
    if membership == "join":
        # Joined now, so joined after every event: their past stays do not matter.
        return ReadAccess("join")
    history = await store.visibility.get_user_memberships(room_id, user_id)
    found = await store.events.get_events(event_id for event_id, _ in history)
    stays = [(p, found[i]) for i, p in history if i in found]
    joins = [p for p, e in stays if e.membership == "join"]
    last_join = joins[-1] if joins else None
    visibility = await store.state.get_current_state_event(room_id, HISTORY_VISIBILITY, "")
    if visibility is not None and visibility.content.get("history_visibility") == WORLD_READABLE:
        position = None if member is None else member.internal.stream_ordering
        if (
            member is not None
            and membership == "leave"
            and position is not None
            and not await store.room_use.is_forgotten(user_id, room_id)
        ):
            # Synapse's departed-user bound (a ban or a forgotten room peeks unbounded).
            return ReadAccess(
                membership,
                until_event_id=member.event_id,
                last_join=last_join,
                pages_up_to=position,
            )
        return ReadAccess(membership, last_join=last_join)
    if membership in ("leave", "ban") and last_join is not None:
        # The stay ends at the first membership change after the last join.
        end = next(((p, e) for p, e in stays if p > last_join and e.membership != "join"), None)
        if end is not None:
            return ReadAccess(membership, end[0], end[1].event_id, last_join)
    return None


async def check_read_access(store: Store, room_id: str, user_id: str) -> ReadAccess:
    """404 for an unknown room, 403 for a user who may not read it."""
    if await store.rooms.get_room(room_id) is None:
        raise NotFound("Unknown room")
    access = await room_access(store, room_id, user_id)
    if access is None:
        raise Forbidden(NOT_A_MEMBER)
    return access


async def state_at_position(
    store: Store, access: ReadAccess, room_id: str, user_id: str, position: int
) -> StateMap:
    """The room's state after its last event at or before ``position``, if the requester could
    see it there: 404 when the room had no event by then, 403 when the state there was hidden
    from them (``/members?at=``). A departed member asking for a point at or after the end of
    their access gets the room as of their leave (as without ``at``); in a room that is
    ``world_readable`` now they are not capped: the point is judged alone, as Synapse does."""
    if access.up_to is not None and position >= access.up_to and access.until_event_id:
        # At or after the end of their stay: the room as they left it, which they saw.
        state = await store.state.get_state_ids_at_event(access.until_event_id)
        if state is None:
            raise NotFound("Can't find event for token")
        return state
    last_id = await store.room_use.get_last_event_id_at(room_id, position)
    last = None if last_id is None else await store.events.get_event(last_id)
    state = None if last is None else await store.state.get_state_ids_at_event(last.event_id)
    if last is None or state is None:
        raise NotFound("Can't find event for token")
    groups = await state_groups_at(store, [last], before=False)
    facts = await group_facts(store, groups.values(), lambda member: member == user_id)
    found = facts.get(groups.get(last.event_id, -1))
    if not state_visible_at(
        None if found is None else found.visibility,
        None if found is None else found.memberships.get(user_id),
        joined_later=access.joined_at_or_after(last.internal.stream_ordering or position),
    ):
        raise Forbidden(NOT_VISIBLE_AT)
    return state


def check_joined(access: ReadAccess) -> None:
    """403 unless the requester is joined now (``/joined_members``, as Synapse)."""
    if access.membership != "join":
        raise Forbidden(NOT_JOINED)


async def filter_events_for_client(
    store: Store,
    user_id: str,
    events: Sequence[Event],
    *,
    access: ReadAccess | None = None,
) -> list[Event]:
    """The events of ``events`` the user may see, in their order. ``access`` is the user's
    :class:`ReadAccess` when all the events are of one room and the caller already has it."""
    by_room: dict[str, list[Event]] = {}
    for event in events:
        # Rejected and soft-failed events never reach a client.
        internal = event.internal
        if internal.rejected_reason is None and not internal.soft_failed:
            by_room.setdefault(event.room_id, []).append(event)
    allowed: set[str] = set()
    for room_id, room_events in by_room.items():
        reach = access if access is not None else await room_access(store, room_id, user_id)
        allowed.update(await _visible_in_room(store, user_id, reach, room_id, room_events))
    return [e for e in events if e.event_id in allowed]


async def _visible_in_room(
    store: Store,
    user_id: str,
    access: ReadAccess | None,
    room_id: str,
    events: list[Event],
) -> set[str]:
    # /sync judges a whole timeline (a thousand events) per request, so the per-event work
    # below is kept to plain attribute reads: each event is looked at once to place it, once
    # to judge it.
    visible: set[str] = set()
    placed: list[tuple[str, int]] = []
    placed_events: list[Event] = []
    up_to = None if access is None else access.up_to
    for event in events:
        position = event.internal.stream_ordering
        if event.internal.outlier or position is None:
            # No state is known at an outlier: only one's own membership (an invite received
            # over federation, its rejection) is shown, as Synapse.
            if _is_own_membership(event, user_id):
                visible.add(event.event_id)
        elif access is not None and (up_to is None or position <= up_to):  # access.can_see
            placed.append((event.event_id, position))
            placed_events.append(event)
    if not placed or access is None:
        return visible
    groups = await state_groups_before(store, room_id, placed)
    facts = {
        group: (found.visibility, found.memberships.get(user_id))
        for group, found in (
            await group_facts(store, set(groups.values()), lambda member: member == user_id)
        ).items()
    }
    # Joined now: joined at or after every event, without asking per event.
    joined_now = access.membership == "join"
    # An ordinary event's verdict depends only on its group and on whether the user joined
    # at or after it: judged once per pair, not once per event.
    ordinary: dict[tuple[int, bool], bool] = {}
    for (event_id, position), event in zip(placed, placed_events, strict=True):
        group = groups.get(event_id)
        if group is None:
            continue  # no state known at it (cannot happen for an event with a position)
        joined_later = joined_now or access.joined_at_or_after(position)
        event_type = event.type
        is_visibility_event = event_type == HISTORY_VISIBILITY and event.state_key == ""
        own = event_type == "m.room.member" and event.state_key == user_id
        if not is_visibility_event and not own:
            key = (group, joined_later)
            verdict = ordinary.get(key)
            if verdict is None:
                verdict = ordinary[key] = event_visible(EventFacts(*facts[group], joined_later))
        else:
            verdict = event_visible(
                EventFacts(
                    *facts[group],
                    joined_later,
                    sets_visibility=event.content.get("history_visibility"),
                    is_visibility_event=is_visibility_event,
                    own_membership=event.membership if own else None,
                    is_own_membership_event=own,
                )
            )
        if verdict:
            visible.add(event_id)
    return visible


def _is_own_membership(event: Event, user_id: str) -> bool:
    return event.type == "m.room.member" and event.state_key == user_id
