"""Reading relations from the client API: ``/relations/{eventId}[/{relType}[/{eventType}]]``
and ``/threads`` (client-server API v1). Who may see what is decided in
:mod:`homeserver.visibility`: the parent and every related event handed out has passed
:func:`filter_events_for_client`, as has every thread root.

Tokens are the stream tokens of ``/messages`` (``s{P}``: just after the event at position P),
so a ``/sync`` ``next_batch`` or a ``/messages`` ``start`` may be handed to ``/relations``;
``/threads`` tokens ``s{P}`` continue with the threads whose newest reply is at or before P.
"""

from __future__ import annotations

from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.events.event import Event
from homeserver.events.relations import MAX_FIELD_LENGTH, THREAD, relation_of
from homeserver.storage import Store
from homeserver.storage.relations import RECURSION_DEPTH
from homeserver.streams.tokens import StreamToken
from homeserver.types import event_id_error, room_id_error
from homeserver.visibility.client import check_read_access, filter_events_for_client
from homeserver.visibility.serialize import serialize_for_client

#: Synapse's default page sizes for both endpoints, and our cap.
DEFAULT_LIMIT = 5
MAX_LIMIT = 1000
THREAD_INCLUDES = ("all", "participated")
UNKNOWN_PARENT = "Unknown parent event."
UNKNOWN_TARGET = "Can't send relation to unknown event"
THREAD_FROM_RELATION = "Cannot start threads from an event with a relation"


def _check_ids(room_id: str, event_id: str | None = None) -> None:
    reason = room_id_error(room_id) or (event_id_error(event_id) if event_id is not None else None)
    if reason:
        raise BadRequest(reason, Codes.INVALID_PARAM)


def _check_filter(name: str, value: str | None) -> None:
    if value is not None and (not 0 < len(value) <= MAX_FIELD_LENGTH or "\x00" in value):
        raise BadRequest(f"Invalid {name}", Codes.INVALID_PARAM)


async def check_relation(store: Store, room_id: str, user_id: str, content: dict[str, Any]) -> None:
    """Synapse's checks on a relation a client sends: its parent must be an event of this room
    (or one this room's events already relate to: the client has some reason to know it), and a
    thread may not start from an event that is itself a relation. A parent in another room is
    refused with the unknown-event answer, which does not tell that it exists; a sender who is
    not joined is not answered here at all (the event's auth refuses them), so that no stranger
    learns which event IDs a room holds."""
    relation = relation_of(content)
    if relation is None:
        return
    member = await store.state.get_current_state_event(room_id, "m.room.member", user_id)
    if member is None or member.membership != "join":
        return
    parent = await store.events.get_event(relation.parent_id)
    if parent is None or parent.room_id != room_id:
        if parent is None and await store.relations.is_relation_target(relation.parent_id, room_id):
            return
        raise BadRequest(UNKNOWN_TARGET, Codes.UNKNOWN)
    if relation.rel_type == THREAD and await store.relations.get_relation_types([parent.event_id]):
        raise BadRequest(THREAD_FROM_RELATION, Codes.UNKNOWN)


class RelationsReader:
    def __init__(self, store: Store, clock: WallClock) -> None:
        self.store = store
        self.clock = clock

    async def _load(self, ids: list[str]) -> list[Event]:
        found = await self.store.events.get_events(ids)
        return [found[i] for i in ids if i in found]

    async def relations(
        self,
        user_id: str,
        room_id: str,
        event_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        from_token: StreamToken | None,
        to_token: StreamToken | None,
        limit: int,
        backwards: bool,
        recurse: bool,
    ) -> dict[str, Any]:
        _check_ids(room_id, event_id)
        _check_filter("relation type", rel_type)
        _check_filter("event type", event_type)
        access = await check_read_access(self.store, room_id, user_id)
        parent = await self.store.events.get_event(event_id)
        if (
            parent is None
            or parent.room_id != room_id
            or not await filter_events_for_client(self.store, user_id, [parent], access=access)
        ):
            # As Synapse: a parent the user may not see is not told apart from an unknown one.
            raise NotFound(UNKNOWN_PARENT)
        newest = await self.store.events.get_max_stream_ordering()
        if backwards:
            after = to_token.events if to_token else 0
            up_to = from_token.events if from_token else newest
        else:
            after = from_token.events if from_token else 0
            up_to = to_token.events if to_token else newest
        if access.messages_up_to is not None:
            up_to = min(up_to, access.messages_up_to)
        rows = await self.store.relations.get_children(
            room_id,
            event_id,
            rel_type=rel_type,
            event_type=event_type,
            after=after,
            up_to=up_to,
            backwards=backwards,
            limit=limit + 1,
            recurse=recurse,
        )
        page = rows[:limit]
        events = await filter_events_for_client(
            self.store, user_id, await self._load([i for i, _ in page]), access=access
        )
        body: dict[str, Any] = {
            "chunk": await serialize_for_client(self.store, events, self.clock(), user_id=user_id)
        }
        if len(rows) > limit and page:
            last = page[-1][1]
            body["next_batch"] = str(StreamToken(events=last - 1 if backwards else last))
        if from_token is not None:
            body["prev_batch"] = str(from_token)
        if recurse:
            body["recursion_depth"] = RECURSION_DEPTH
        return body

    async def threads(
        self,
        user_id: str,
        room_id: str,
        *,
        include: str,
        from_token: StreamToken | None,
        limit: int,
    ) -> dict[str, Any]:
        _check_ids(room_id)
        if include not in THREAD_INCLUDES:
            raise BadRequest("'include' must be 'all' or 'participated'", Codes.INVALID_PARAM)
        access = await check_read_access(self.store, room_id, user_id)
        up_to = from_token.events if from_token is not None else None
        if access.messages_up_to is not None:
            up_to = access.messages_up_to if up_to is None else min(up_to, access.messages_up_to)
        rows = await self.store.relations.get_thread_roots(
            room_id,
            participant=user_id if include == "participated" else None,
            before=None if up_to is None else up_to + 1,
            limit=limit + 1,
        )
        page = rows[:limit]
        roots = await filter_events_for_client(
            self.store, user_id, await self._load([i for i, _ in page]), access=access
        )
        body: dict[str, Any] = {
            "chunk": await serialize_for_client(self.store, roots, self.clock(), user_id=user_id)
        }
        if len(rows) > limit and page:
            body["next_batch"] = str(StreamToken(events=page[-1][1] - 1))
        return body
