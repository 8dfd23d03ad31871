"""``POST /search``: room events matching a search term, in the rooms the user is joined to
(as Synapse), each result one the user may see.

The index (:mod:`homeserver.storage.search`) answers candidates best first (``rank``) or newest
first (``recent``); each batch is loaded, put through the request's filter and through
:func:`homeserver.visibility.client.filter_events_for_client`, until the page is full. A request
stops after :data:`_MAX_SCANNED` candidates and hands back a ``next_batch`` to go on from, so a
term matching only hidden events cannot make one request read the whole index.

``count`` never counts what the user may not see: the matches after the user's current
membership event in each room (all visible to a joined member), plus those before it that pass
the visibility rules among the newest :data:`_COUNT_BEFORE_JOIN` of them (beyond that the count
is a lower bound; the spec calls it approximate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.errors import BadRequest, Codes
from homeserver.events.event import Event
from homeserver.rooms.room_reads import RoomReader
from homeserver.rooms.search_request import SearchRequest
from homeserver.storage import Store
from homeserver.storage.search import SearchHit, SearchQuery
from homeserver.visibility.client import ReadAccess, filter_events_for_client, room_access

_MAX_SCANNED = 2000
_COUNT_BEFORE_JOIN = 500
_MAX_BATCH = 200


@dataclass(frozen=True, slots=True)
class _Found:
    hit: SearchHit
    event: Event


def _parse_batch(token: str | None, order_by: str) -> int | None:
    """The position a ``next_batch`` token resumes from; 400 if it is not one of ours for this
    ordering."""
    if token is None:
        return None
    order, _, value = token.partition("_")
    if order != order_by or not value.isascii() or not value.isdigit() or len(value) > 18:
        raise BadRequest("Invalid next_batch token", Codes.INVALID_PARAM)
    return int(value)


class RoomSearch:
    def __init__(self, store: Store, reader: RoomReader) -> None:
        self.store = store
        self.reader = reader

    async def search(
        self, user_id: str, request: SearchRequest | None, next_batch: str | None
    ) -> dict[str, Any]:
        if request is None:
            return {"search_categories": {}}
        resume_from = _parse_batch(next_batch, request.order_by)
        joined = await self.store.state.get_rooms_for_user(user_id)
        rooms = sorted(
            r
            for r in joined
            if (request.rooms is None or r in request.rooms) and r not in request.not_rooms
        )
        query = SearchQuery(
            words=request.words,
            room_ids=tuple(rooms),
            keys=request.keys,
            senders=request.event_filter.senders,
            not_senders=request.event_filter.not_senders,
        )
        found, resume = await self._scan(user_id, request, query, resume_from)
        count = await self._count(user_id, request, query)
        body: dict[str, Any] = {
            "results": await self._results(user_id, request, found),
            "count": count,
            "highlights": list(request.words),
        }
        if resume is not None:
            body["next_batch"] = f"{request.order_by}_{resume}"
        if request.group_by:
            body["groups"] = _groups(request.group_by, found)
        if request.include_state:
            body["state"] = await self._state({f.event.room_id for f in found})
        return {"search_categories": {"room_events": body}}

    # --- finding ---------------------------------------------------------------------------
    async def _fetch(
        self, request: SearchRequest, query: SearchQuery, cursor: int | None, size: int
    ) -> list[SearchHit]:
        if request.order_by == "recent":
            return await self.store.search.search_recent(query, before=cursor, limit=size)
        return await self.store.search.search_ranked(query, offset=cursor or 0, limit=size)

    async def _visible(
        self, user_id: str, request: SearchRequest, hits: Sequence[SearchHit]
    ) -> dict[str, Event]:
        """The events of ``hits`` the request's filter keeps and the user may see."""
        events = await self.store.events.get_events(h.event_id for h in hits)
        wanted = [
            event
            for event in (events.get(h.event_id) for h in hits)
            if event is not None
            # A redaction removes the index row; one racing the read is still never shown.
            and not event.internal.redacted
            and request.event_filter.allows(event.type, event.sender)
            and (
                request.contains_url is None
                or request.contains_url == isinstance(event.content.get("url"), str)
            )
        ]
        visible = await filter_events_for_client(self.store, user_id, wanted)
        return {e.event_id: e for e in visible}

    async def _scan(
        self,
        user_id: str,
        request: SearchRequest,
        query: SearchQuery,
        cursor: int | None,
    ) -> tuple[list[_Found], int | None]:
        """A page of visible results and where the next one starts (None: no more)."""
        found: list[_Found] = []
        size = min(max(2 * request.limit, 20), _MAX_BATCH)
        scanned = 0
        while True:
            hits = await self._fetch(request, query, cursor, size)
            visible = await self._visible(user_id, request, hits) if hits else {}
            for i, hit in enumerate(hits):
                event = visible.get(hit.event_id)
                if event is None:
                    continue
                if len(found) == request.limit:  # one more visible match: another page follows
                    if request.order_by == "recent":
                        return found, found[-1].hit.stream_ordering
                    return found, (cursor or 0) + i
                found.append(_Found(hit, event))
            if len(hits) < size:
                return found, None
            if request.order_by == "recent":
                cursor = hits[-1].stream_ordering
            else:
                cursor = (cursor or 0) + len(hits)
            scanned += len(hits)
            if scanned >= _MAX_SCANNED:
                return found, cursor

    async def _count(self, user_id: str, request: SearchRequest, query: SearchQuery) -> int:
        joined_at: dict[str, int] = {}
        for room_id in query.room_ids:
            member = await self.store.state.get_current_state_event(
                room_id, "m.room.member", user_id
            )
            if member is not None and member.internal.stream_ordering is not None:
                joined_at[room_id] = member.internal.stream_ordering
        after = await self.store.search.count_after(query, joined_at)
        earlier = await self.store.search.hits_up_to(query, joined_at, limit=_COUNT_BEFORE_JOIN)
        visible = await self._visible(user_id, request, earlier) if earlier else {}
        return after + len(visible)

    # --- answering -------------------------------------------------------------------------
    async def _results(
        self, user_id: str, request: SearchRequest, found: list[_Found]
    ) -> list[dict[str, Any]]:
        events = await self.reader.serialize([f.event for f in found])
        accesses: dict[str, ReadAccess | None] = {}
        results: list[dict[str, Any]] = []
        for item, event_json in zip(found, events, strict=True):
            result: dict[str, Any] = {"rank": item.hit.rank, "result": event_json}
            context = request.context
            if context is not None:
                room_id = item.event.room_id
                if room_id not in accesses:
                    accesses[room_id] = await room_access(self.store, room_id, user_id)
                access = accesses[room_id]
                if access is not None:
                    around = await self.reader.around(
                        user_id,
                        access,
                        item.event,
                        before=context.before_limit,
                        after=context.after_limit,
                    )
                    if context.include_profile:
                        around["profile_info"] = await self._profiles(item.event, around)
                    result["context"] = around
            results.append(result)
        return results

    async def _profiles(self, event: Event, around: dict[str, Any]) -> dict[str, Any]:
        """Display name and avatar of each sender in a result's context, from the room's state
        at the result (as Synapse, which reads them at the last event of the context)."""
        senders = {event.sender}
        for key in ("events_before", "events_after"):
            senders.update(e["sender"] for e in around[key])
        state = await self.store.state.get_state_ids_at_event(event.event_id) or {}
        member_ids = {
            s: state[("m.room.member", s)] for s in senders if ("m.room.member", s) in state
        }
        members = await self.store.events.get_events(member_ids.values())
        profiles: dict[str, Any] = {}
        for sender, member_id in member_ids.items():
            member = members.get(member_id)
            if member is None or member.internal.redacted:
                continue
            profile = {
                k: member.content[k]
                for k in ("displayname", "avatar_url")
                if isinstance(member.content.get(k), str)
            }
            profiles[sender] = profile
        return profiles

    async def _state(self, room_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        """Each result room's current state (the user is joined to every searched room)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for room_id in sorted(room_ids):
            ids = await self.store.state.get_current_state_ids(room_id)
            events = await self.store.events.get_events(ids.values())
            out[room_id] = await self.reader.serialize(
                [events[i] for i in ids.values() if i in events]
            )
        return out


def _groups(group_by: Sequence[str], found: Sequence[_Found]) -> dict[str, Any]:
    """The page's results grouped by room and/or sender, each group ordered by its first
    result's place on the page."""
    groups: dict[str, Any] = {}
    for key in group_by:
        by_value: dict[str, dict[str, Any]] = {}
        for item in found:
            value = item.event.room_id if key == "room_id" else item.event.sender
            group = by_value.setdefault(value, {"results": [], "order": len(by_value) + 1})
            group["results"].append(item.event.event_id)
        groups[key] = by_value
    return groups
