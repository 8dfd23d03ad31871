"""Space hierarchies (spec: client-server ``GET /rooms/{roomId}/hierarchy``, server-server
``GET /hierarchy/{roomId}``), as Synapse walks them.

Clients: a depth-first walk from the root, children in the spec's order, each room once; rooms
we are in are summarised from our state, others are asked of the servers their link names
(``via``, at most three), and every room is shown only if the user may see it. A page holds at
most ``limit`` rooms (50 by default and at most); the rest of the walk is stored under the
``next_batch`` token (migration 024), bound to the user, the root and the query, for five
minutes, so any process can serve the next page.

Servers: the root and its direct children that we are in and the asking server may see; the
children it may not see are named in ``inaccessible_children``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden, NotFound
from homeserver.rooms.space_entries import (
    SPACE,
    LocalSummaries,
    RemoteAnswer,
    RemoteFetcher,
    Summary,
)
from homeserver.storage import Store
from homeserver.storage.hierarchy import HierarchySession
from homeserver.types import room_id_error

#: rooms in one page, and the default page size (Synapse).
MAX_ROOMS = 50
#: children of one space a server is told about (Synapse).
MAX_ROOMS_PER_SPACE = 50
#: servers asked about one room we are not in (Synapse).
MAX_SERVERS_PER_SPACE = 3
SESSION_LIFETIME_MS = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class HierarchyQuery:
    room_id: str
    suggested_only: bool = False
    max_depth: int | None = None
    limit: int | None = None
    from_token: str | None = None

    def params(self) -> str:
        return json.dumps({"suggested_only": self.suggested_only, "max_depth": self.max_depth})


@dataclass(slots=True)
class _Queued:
    room_id: str
    via: list[str]
    depth: int
    #: what another server already told us of this room (as a child of a space it described).
    remote: dict[str, Any] | None = None

    def to_json(self) -> list[Any]:
        return [self.room_id, self.via, self.depth, self.remote]

    @classmethod
    def from_json(cls, value: list[Any]) -> _Queued:
        return cls(value[0], list(value[1]), int(value[2]), value[3])


def check_room_id(room_id: str) -> None:
    if room_id_error(room_id) is not None:
        raise BadRequest(f"Invalid room ID: {room_id!r}", Codes.INVALID_PARAM)


class HierarchyService:
    def __init__(
        self,
        *,
        store: Store,
        server_name: str,
        clock: WallClock,
        remote: RemoteFetcher | None = None,
    ) -> None:
        self.store = store
        self.server_name = server_name
        self.clock = clock
        self.local = LocalSummaries(store, server_name)
        self.remote = remote

    # --- clients -------------------------------------------------------------------------
    async def get_hierarchy(self, user_id: str, query: HierarchyQuery) -> dict[str, Any]:
        check_room_id(query.room_id)
        if query.limit is not None and query.limit <= 0:
            raise BadRequest("limit must be a positive integer", Codes.INVALID_PARAM)
        if query.max_depth is not None and query.max_depth < 0:
            raise BadRequest("max_depth must be a non-negative integer", Codes.INVALID_PARAM)
        root_via = await self._root_access(user_id, query.room_id)
        queue, processed = await self._resume(user_id, query, root_via)
        page_size = min(query.limit or MAX_ROOMS, MAX_ROOMS)
        rooms: list[dict[str, Any]] = []
        while queue and len(rooms) < page_size:
            item = queue.pop()
            if item.room_id in processed:
                continue
            summary, remote_children, inaccessible = await self._summarise(user_id, item, query)
            processed.add(item.room_id)
            if summary is None:
                continue
            rooms.append(summary.as_json(for_client=True))
            if query.max_depth is not None and item.depth >= query.max_depth:
                continue
            # Reversed so that the first child in order is popped next.
            queue.extend(
                _Queued(
                    child["state_key"],
                    list(child["content"]["via"]),
                    item.depth + 1,
                    remote_children.get(child["state_key"]),
                )
                for child in reversed(summary.children)
                if child["state_key"] not in inaccessible
            )
        result: dict[str, Any] = {"rooms": rooms}
        if queue:
            result["next_batch"] = await self._save(user_id, query, queue, processed)
        return result

    async def _root_access(self, user_id: str, room_id: str) -> list[str]:
        """Refuses a root the user may not see; for a room we have no state of but the user
        is invited to (Synapse: a space preview before joining), the servers to ask."""
        view = await self.local.view(room_id)
        if view is not None and view.state:
            if await self.local.accessible(view, user_id=user_id, origin=None):
                return []
        else:
            via = await self.local.invited_from(room_id, user_id)
            if via:
                return via
        raise Forbidden(f"User {user_id} not in room {room_id}, and room previews are disabled")

    async def _summarise(
        self, user_id: str, item: _Queued, query: HierarchyQuery
    ) -> tuple[Summary | None, dict[str, dict[str, Any]], frozenset[str]]:
        if await self.local.is_resident(item.room_id):
            summary = await self.local.summarise(
                item.room_id, user_id=user_id, origin=None, suggested_only=query.suggested_only
            )
            return summary, {}, frozenset()
        children: dict[str, dict[str, Any]] = {}
        inaccessible: frozenset[str] = frozenset()
        at_bottom = query.max_depth is not None and item.depth >= query.max_depth
        if item.remote is not None and (item.remote.get("room_type") != SPACE or at_bottom):
            # What the parent's server said suffices: no children are needed.
            summary: Summary | None = Summary(item.room_id, dict(item.remote))
        else:
            answer = await self._ask(item, query.suggested_only)
            if answer is None:
                return None, {}, frozenset()
            summary, children, inaccessible = answer.room, answer.children, answer.inaccessible
        if summary is not None and not await self.local.remote_entry_accessible(
            user_id, item.room_id, summary.entry
        ):
            summary = None
        return summary, children, inaccessible

    async def _ask(self, item: _Queued, suggested_only: bool) -> RemoteAnswer | None:
        via = [s for s in item.via if s != self.server_name][:MAX_SERVERS_PER_SPACE]
        if self.remote is None or not via:
            return None
        return await self.remote(item.room_id, via, suggested_only)

    async def _resume(
        self, user_id: str, query: HierarchyQuery, root_via: list[str]
    ) -> tuple[list[_Queued], set[str]]:
        if not query.from_token:
            return [_Queued(query.room_id, root_via, 0)], set()
        session = await self.store.hierarchy.get_session(query.from_token, now_ms=self.clock())
        if (
            session is None
            or session.user_id != user_id
            or session.room_id != query.room_id
            or session.params != query.params()
        ):
            raise BadRequest("Unknown pagination token", Codes.INVALID_PARAM)
        walk = json.loads(session.walk)
        return [_Queued.from_json(q) for q in walk["queue"]], set(walk["processed"])

    async def _save(
        self, user_id: str, query: HierarchyQuery, queue: list[_Queued], processed: set[str]
    ) -> str:
        token = secrets.token_urlsafe(16)
        walk = json.dumps({"queue": [q.to_json() for q in queue], "processed": sorted(processed)})
        now = self.clock()
        await self.store.hierarchy.save_session(
            token,
            HierarchySession(user_id, query.room_id, query.params(), walk),
            now_ms=now,
            expires_ts=now + SESSION_LIFETIME_MS,
        )
        return token

    # --- servers -------------------------------------------------------------------------
    async def get_federation_hierarchy(
        self, origin: str, room_id: str, *, suggested_only: bool
    ) -> dict[str, Any]:
        check_room_id(room_id)
        root = None
        if await self.local.is_resident(room_id):
            root = await self.local.summarise(
                room_id, user_id=None, origin=origin, suggested_only=suggested_only
            )
        if root is None:
            raise NotFound(f"Unknown room: {room_id}")
        children: list[dict[str, Any]] = []
        inaccessible: list[str] = []
        for link in root.children[:MAX_ROOMS_PER_SPACE]:
            child_id = link["state_key"]
            if not await self.local.is_resident(child_id):
                continue
            summary = await self.local.summarise(
                child_id,
                user_id=None,
                origin=origin,
                suggested_only=suggested_only,
                include_children=False,
            )
            if summary is None:
                inaccessible.append(child_id)
            else:
                children.append(summary.entry)
        return {
            "room": root.as_json(for_client=False),
            "children": children,
            "inaccessible_children": inaccessible,
        }
