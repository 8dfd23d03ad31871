"""Reading a room from the client API: /messages, /context, /event, /members,
/joined_members, /joined_rooms. Who may read what is decided in :mod:`homeserver.visibility`:
every event handed out here has passed :func:`filter_events_for_client`.

Pagination goes by stream ordering. A token ``s{P}_…`` is the position just after the event
with stream ordering P: backwards from it returns events ``<= P`` newest first, forwards returns
events ``> P`` oldest first. So /sync's ``next_batch`` (``s{newest}``) and a ``prev_batch`` of
``s{first timeline event - 1}`` both hand over to /messages with nothing missed or repeated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden, NotFound
from homeserver.events.event import Event
from homeserver.rooms.event_filter import NO_FILTER, RoomEventFilter
from homeserver.storage import Store
from homeserver.storage.room_use import TimelineRow
from homeserver.storage.state import StateMap
from homeserver.streams.tokens import StreamToken
from homeserver.types import event_id_error, room_id_error
from homeserver.visibility.client import (
    ReadAccess,
    check_joined,
    check_read_access,
    filter_events_for_client,
    state_at_position,
)
from homeserver.visibility.serialize import serialize_for_client

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
#: rows read per query while filtering, and the most one request scans before it stops and
#: hands back a token to continue from (so a filter matching nothing cannot scan forever).
_SCAN_BATCH = 200
_MAX_SCANNED = 10_000
MEMBERSHIPS = frozenset({"join", "invite", "knock", "leave", "ban"})
NO_PERMISSION = "You don't have permission to access that event."


def _check_ids(room_id: str, event_id: str | None = None) -> None:
    reason = room_id_error(room_id) or (event_id_error(event_id) if event_id is not None else None)
    if reason:
        raise BadRequest(reason, Codes.INVALID_PARAM)


class RoomReader:
    def __init__(self, store: Store, clock: WallClock) -> None:
        self.store = store
        self.clock = clock

    async def serialize(
        self, events: Sequence[Event], *, prev_content: bool = False, user_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Client JSON; ``prev_content`` for the timeline-like answers (/messages, /context),
        as Synapse; with the reader ``user_id``, the bundled aggregations."""
        return await serialize_for_client(
            self.store, events, self.clock(), prev_content=prev_content, user_id=user_id
        )

    async def state_ids_for(self, access: ReadAccess, room_id: str) -> StateMap:
        """The state the requester may see: current, or as of their leaving."""
        if access.until_event_id is None:
            return await self.store.state.get_current_state_ids(room_id)
        return await self.store.state.get_state_ids_at_event(access.until_event_id) or {}

    # --- /messages -------------------------------------------------------------------------
    async def messages(
        self,
        user_id: str,
        room_id: str,
        *,
        backwards: bool,
        from_token: StreamToken | None,
        to_token: StreamToken | None,
        limit: int,
        event_filter: RoomEventFilter = NO_FILTER,
        as_admin: bool = False,
    ) -> dict[str, Any]:
        """``as_admin``: the admin API's read (Synapse's ``use_admin_priviledge``): every event
        of the room, whatever the requester's membership and the history visibility."""
        _check_ids(room_id)
        access = await self._access(room_id, user_id, as_admin)
        newest = await self.store.events.get_max_stream_ordering()
        if backwards:
            start = from_token or StreamToken(events=newest)
            after, up_to = (to_token.events if to_token else 0), start.events
        else:
            start = from_token or StreamToken()
            after, up_to = start.events, (to_token.events if to_token else newest)
        if access.messages_up_to is not None:
            up_to = min(up_to, access.messages_up_to)
        events, resume = await self._scan(
            None if as_admin else user_id,
            access,
            room_id,
            after,
            up_to,
            backwards,
            limit,
            event_filter,
        )
        body: dict[str, Any] = {
            "chunk": await self.serialize(events, prev_content=True, user_id=user_id),
            "start": str(start),
            "state": await self._lazy_members(access, room_id, events, event_filter),
        }
        if resume is not None:
            body["end"] = str(start.with_events(resume))
        return body

    async def _access(self, room_id: str, user_id: str, as_admin: bool) -> ReadAccess:
        if not as_admin:
            return await check_read_access(self.store, room_id, user_id)
        if await self.store.rooms.get_room(room_id) is None:
            raise NotFound("Unknown room")
        return ReadAccess(membership="join")

    async def _scan(
        self,
        user_id: str | None,
        access: ReadAccess,
        room_id: str,
        after: int,
        up_to: int,
        backwards: bool,
        limit: int,
        event_filter: RoomEventFilter,
    ) -> tuple[list[Event], int | None]:
        """Up to ``limit`` matching events the user may see in ``(after, up_to]`` and the
        position to resume from (None when nothing further matches). ``user_id`` None: every
        event (the admin API)."""
        found: list[Event] = []
        scanned = 0
        while after < up_to and limit > 0:
            batch = await self.store.room_use.get_timeline_rows(
                room_id, after=after, up_to=up_to, backwards=backwards, limit=_SCAN_BATCH
            )
            pending = [r for r in batch if event_filter.allows(r.type, r.sender)]
            # First load and judge only as many as could still be needed (one more than the
            # limit tells whether more follow): most pages stop there. If some were hidden,
            # the rest of the batch at once (a late joiner scanning back through history he
            # may not see costs one judgement per batch, not one per page).
            need = limit - len(found) + 1
            while pending:
                rows, pending = pending[:need], pending[need:]
                need = len(pending)
                events = await self._load(rows)
                if user_id is not None:
                    events = await filter_events_for_client(
                        self.store, user_id, events, access=access
                    )
                for event in events:
                    if len(found) == limit:  # one more match exists: more to come
                        return found, self._position_after(found[-1], backwards)
                    found.append(event)
            scanned += len(batch)
            if len(batch) < _SCAN_BATCH:
                break
            if backwards:
                up_to = batch[-1].stream_ordering - 1
            else:
                after = batch[-1].stream_ordering
            if scanned >= _MAX_SCANNED:
                return found, up_to if backwards else after
        return found, None

    @staticmethod
    def _position_after(event: Event, backwards: bool) -> int:
        ordering = event.internal.stream_ordering or 0
        return ordering - 1 if backwards else ordering

    async def _load(self, rows: Sequence[TimelineRow]) -> list[Event]:
        found = await self.store.events.get_events([r.event_id for r in rows])
        return [found[r.event_id] for r in rows if r.event_id in found]

    async def _lazy_members(
        self,
        access: ReadAccess,
        room_id: str,
        events: Sequence[Event],
        event_filter: RoomEventFilter,
    ) -> list[dict[str, Any]]:
        """With ``lazy_load_members``, the member events of the chunk's senders as of the
        chunk's first event (as Synapse: the names they had then, and the member events of
        those who have left since, which a reader of that stretch of history saw)."""
        if not event_filter.lazy_load_members or not events:
            return []
        state = await self.store.state.get_state_ids_at_event(events[0].event_id)
        if state is None:
            state = await self.state_ids_for(access, room_id)
        senders = {e.sender for e in events}
        ids = [state[("m.room.member", s)] for s in senders if ("m.room.member", s) in state]
        found = await self.store.events.get_events(ids)
        return await self.serialize([found[i] for i in ids if i in found])

    # --- single events ---------------------------------------------------------------------
    async def _visible_event(
        self, user_id: str | None, access: ReadAccess, room_id: str, event_id: str
    ) -> Event | None:
        """The event if it is this room's and the user may see it; 404 if it is not the room's,
        None if the user may not see it."""
        event = await self.store.events.get_event(event_id)
        if (
            event is None
            or event.room_id != room_id
            or event.internal.outlier
            or event.rejected
            or event.internal.soft_failed
        ):
            raise NotFound("Event not found.")
        if user_id is None:
            return event
        visible = await filter_events_for_client(self.store, user_id, [event], access=access)
        return visible[0] if visible else None

    async def get_event(self, user_id: str, room_id: str, event_id: str) -> dict[str, Any]:
        _check_ids(room_id, event_id)
        access = await check_read_access(self.store, room_id, user_id)
        event = await self._visible_event(user_id, access, room_id, event_id)
        if event is None:  # as Synapse: not told apart from an unknown event
            raise NotFound("Event not found.")
        (body,) = await self.serialize([event], user_id=user_id)
        return body

    async def context(
        self,
        user_id: str,
        room_id: str,
        event_id: str,
        *,
        limit: int,
        event_filter: RoomEventFilter = NO_FILTER,
        as_admin: bool = False,
    ) -> dict[str, Any]:
        """``as_admin``: as in :meth:`messages`."""
        _check_ids(room_id, event_id)
        access = await self._access(room_id, user_id, as_admin)
        reader = None if as_admin else user_id
        event = await self._visible_event(reader, access, room_id, event_id)
        if event is None:
            raise Forbidden(NO_PERMISSION)
        position = event.internal.stream_ordering or 0
        newest = await self.store.events.get_max_stream_ordering()
        up_to = newest if access.up_to is None else min(newest, access.up_to)
        before_limit = limit // 2
        before_events, _ = await self._scan(
            reader, access, room_id, 0, position - 1, True, before_limit, event_filter
        )
        after_events, _ = await self._scan(
            reader, access, room_id, position, up_to, False, limit - before_limit, event_filter
        )
        last = after_events[-1] if after_events else event
        state_ids = await self.store.state.get_state_ids_at_event(last.event_id) or {}
        if event_filter.lazy_load_members:
            senders = {e.sender for e in (*before_events, event, *after_events)}
            state_ids = {
                k: v for k, v in state_ids.items() if k[0] != "m.room.member" or k[1] in senders
            }
        state_events = await self.store.events.get_events(state_ids.values())
        start = self._position_after(before_events[-1], True) if before_events else position - 1
        end = self._position_after(after_events[-1], False) if after_events else position
        (event_json,) = await self.serialize([event], prev_content=True, user_id=user_id)
        return {
            "event": event_json,
            "events_before": await self.serialize(
                before_events, prev_content=True, user_id=user_id
            ),
            "events_after": await self.serialize(after_events, prev_content=True, user_id=user_id),
            "start": str(StreamToken(events=max(0, start))),
            "end": str(StreamToken(events=end)),
            "state": await self.serialize(
                [state_events[i] for i in state_ids.values() if i in state_events]
            ),
        }

    async def around(
        self, user_id: str, access: ReadAccess, event: Event, *, before: int, after: int
    ) -> dict[str, Any]:
        """The visible events either side of ``event`` with /context's ``start``/``end`` tokens
        (a search result's ``context``); the event itself the caller has judged."""
        position = event.internal.stream_ordering or 0
        newest = await self.store.events.get_max_stream_ordering()
        up_to = newest if access.up_to is None else min(newest, access.up_to)
        before_events, _ = await self._scan(
            user_id, access, event.room_id, 0, position - 1, True, before, NO_FILTER
        )
        after_events, _ = await self._scan(
            user_id, access, event.room_id, position, up_to, False, after, NO_FILTER
        )
        start = self._position_after(before_events[-1], True) if before_events else position - 1
        end = self._position_after(after_events[-1], False) if after_events else position
        return {
            "events_before": await self.serialize(before_events, prev_content=True),
            "events_after": await self.serialize(after_events, prev_content=True),
            "start": str(StreamToken(events=max(0, start))),
            "end": str(StreamToken(events=end)),
        }

    # --- members ---------------------------------------------------------------------------
    async def members(
        self,
        user_id: str,
        room_id: str,
        *,
        at: StreamToken | None = None,
        membership: str | None = None,
        not_membership: str | None = None,
    ) -> dict[str, Any]:
        _check_ids(room_id)
        for name, value in (("membership", membership), ("not_membership", not_membership)):
            if value is not None and value not in MEMBERSHIPS:
                raise BadRequest(f"Invalid {name}", Codes.INVALID_PARAM)
        access = await check_read_access(self.store, room_id, user_id)
        if at is None:
            state = await self.state_ids_for(access, room_id)
        else:
            state = await state_at_position(self.store, access, room_id, user_id, at.events)
        ids = [eid for (t, _), eid in sorted(state.items()) if t == "m.room.member"]
        found = await self.store.events.get_events(ids)
        chosen = [
            found[i]
            for i in ids
            if i in found
            and (membership is None or found[i].membership == membership)
            and (not_membership is None or found[i].membership != not_membership)
        ]
        return {"chunk": await self.serialize(chosen)}

    async def joined_members(self, user_id: str, room_id: str) -> dict[str, Any]:
        _check_ids(room_id)
        check_joined(await check_read_access(self.store, room_id, user_id))
        state = await self.store.state.get_current_state_ids(room_id)
        ids = [eid for (t, _), eid in state.items() if t == "m.room.member"]
        found = await self.store.events.get_events(ids)
        joined: dict[str, Any] = {}
        for event in found.values():
            if event.membership != "join" or event.state_key is None:
                continue
            profile = {}
            for source, key in (("displayname", "display_name"), ("avatar_url", "avatar_url")):
                value = event.content.get(source)
                profile[key] = value if isinstance(value, str) else None
            joined[event.state_key] = profile
        return {"joined": joined}

    async def joined_rooms(self, user_id: str) -> dict[str, Any]:
        return {"joined_rooms": await self.store.state.get_rooms_for_user(user_id, "join")}
