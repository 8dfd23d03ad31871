"""Event relations: the ``event_relations`` rows written at persistence and the reads behind
``/relations``, ``/threads`` and the bundled aggregations.

Every read joins ``events`` and keeps only live relation events: accepted, not soft-failed, not
an outlier and not redacted (so a redacted edit or thread reply drops out of every answer), in
the parent's own room (a relation naming an event of another room is ignored). Who may see
which of them is decided by the caller (:mod:`homeserver.visibility`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.events.relations import REFERENCE, REPLACE, THREAD, relation_of
from homeserver.storage.database import Database, Transaction, in_chunks, placeholders

_CHUNK = 500
#: how deep ``recurse`` follows relations of relations (the spec asks for at least 3).
RECURSION_DEPTH = 3

#: the relation event ``e`` is one a client may be shown at all.
_LIVE = (
    "e.redacted = FALSE AND e.rejected_reason IS NULL AND e.soft_failed = FALSE"
    " AND e.outlier = FALSE"
)


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    count: int
    #: the newest reply's event ID and stream position.
    latest_id: str
    latest_position: int
    #: the user asked about sent the root or a reply.
    participated: bool


async def insert_relations_txn(txn: Transaction, events: Iterable[Any]) -> None:
    """Record the relation of each accepted event that declares one (event persistence)."""
    rows: list[tuple[str, str, str, str]] = []
    for event in events:
        if event.internal.rejected_reason is not None or event.internal.outlier:
            continue
        relation = relation_of(event.content)
        if relation is not None and event.state_key is None:
            rows.append((event.event_id, relation.parent_id, relation.rel_type, event.room_id))
    if rows:
        await txn.executemany(
            "INSERT INTO event_relations (event_id, relates_to_id, relation_type, room_id)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
            rows,
        )


class RelationsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_children(
        self,
        room_id: str,
        parent_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        after: int,
        up_to: int,
        backwards: bool,
        limit: int,
        recurse: bool = False,
    ) -> list[tuple[str, int]]:
        """``(event_id, stream position)`` of the live events relating to ``parent_id`` (and,
        with ``recurse``, to those, down to :data:`RECURSION_DEPTH` levels) with
        ``after < position <= up_to``: the newest ``limit`` newest first when ``backwards``,
        else the oldest oldest first. ``rel_type`` and ``event_type`` filter every level."""
        order = "DESC" if backwards else "ASC"
        where = [_LIVE, "e.room_id = ?", "e.stream_ordering > ?", "e.stream_ordering <= ?"]
        args: list[Any] = [room_id, after, up_to]
        if rel_type is not None:
            where.append("r.relation_type = ?")
            args.append(rel_type)
        if event_type is not None:
            where.append("e.type = ?")
            args.append(event_type)
        if recurse:
            source = (
                "WITH RECURSIVE related (event_id, depth) AS ("
                " SELECT event_id, 1 FROM event_relations WHERE relates_to_id = ?"
                " UNION SELECT c.event_id, related.depth + 1 FROM event_relations c"
                " JOIN related ON c.relates_to_id = related.event_id"
                f" WHERE related.depth < {RECURSION_DEPTH})"
                " SELECT DISTINCT e.event_id, e.stream_ordering FROM related"
                " JOIN event_relations r ON r.event_id = related.event_id"
            )
        else:
            source = "SELECT e.event_id, e.stream_ordering FROM event_relations r"
            where.insert(0, "r.relates_to_id = ?")
        rows = await self.db.fetchall(
            f"{source} JOIN events e ON e.event_id = r.event_id WHERE {' AND '.join(where)}"
            f" ORDER BY e.stream_ordering {order} LIMIT ?",
            parent_id,
            *args,
            limit,
        )
        return [(r[0], int(r[1])) for r in rows]

    async def get_relation_kinds(self, parent_ids: Sequence[str]) -> dict[str, set[str]]:
        """``parent → the relation types naming it`` among ``parent_ids`` (one indexed read,
        rows of redacted relations included: a cheap first cut before the aggregations)."""
        found: dict[str, set[str]] = {}
        for chunk in in_chunks(list(dict.fromkeys(parent_ids)), _CHUNK):
            rows = await self.db.fetchall(
                "SELECT DISTINCT relates_to_id, relation_type FROM event_relations"
                f" WHERE relates_to_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            for parent_id, rel_type in rows:
                found.setdefault(parent_id, set()).add(rel_type)
        return found

    async def get_latest_edits(self, parent_ids: Sequence[str]) -> dict[str, str]:
        """``parent → its latest edit`` (``m.replace``): by the parent's own sender, of the
        parent's type, not a state event; the latest by ``origin_server_ts`` then event ID,
        as the spec and Synapse order edits."""
        latest: dict[str, str] = {}
        for chunk in in_chunks(list(dict.fromkeys(parent_ids)), _CHUNK):
            rows = await self.db.fetchall(
                "SELECT r.relates_to_id, e.event_id FROM event_relations r"
                " JOIN events e ON e.event_id = r.event_id"
                " JOIN events p ON p.event_id = r.relates_to_id"
                f" WHERE r.relates_to_id IN ({placeholders(len(chunk))})"
                f" AND r.relation_type = ? AND {_LIVE} AND e.state_key IS NULL"
                " AND e.sender = p.sender AND e.type = p.type AND e.room_id = p.room_id"
                " ORDER BY e.origin_server_ts, e.event_id",
                *chunk,
                REPLACE,
            )
            for parent_id, edit_id in rows:
                latest[parent_id] = edit_id  # rows come oldest first: the last one wins
        return latest

    async def get_thread_summaries(
        self, parent_ids: Sequence[str], user_id: str
    ) -> dict[str, ThreadSummary]:
        """``root → its thread's summary`` for the roots among ``parent_ids`` with a reply."""
        found: dict[str, ThreadSummary] = {}
        for chunk in in_chunks(list(dict.fromkeys(parent_ids)), _CHUNK):
            rows = await self.db.fetchall(
                "SELECT r.relates_to_id, COUNT(*), MAX(e.stream_ordering),"
                " MAX(CASE WHEN e.sender = ? OR p.sender = ? THEN 1 ELSE 0 END)"
                " FROM event_relations r JOIN events e ON e.event_id = r.event_id"
                " JOIN events p ON p.event_id = r.relates_to_id AND p.room_id = e.room_id"
                f" WHERE r.relates_to_id IN ({placeholders(len(chunk))})"
                f" AND r.relation_type = ? AND {_LIVE} GROUP BY r.relates_to_id",
                user_id,
                user_id,
                *chunk,
                THREAD,
            )
            positions = {int(r[2]): r for r in rows}
            latest = await self._ids_at(list(positions))
            for position, (root_id, count, _, participated) in positions.items():
                if position in latest:
                    found[root_id] = ThreadSummary(
                        int(count), latest[position], position, bool(participated)
                    )
        return found

    async def _ids_at(self, positions: list[int]) -> dict[int, str]:
        if not positions:
            return {}
        rows = await self.db.fetchall(
            "SELECT stream_ordering, event_id FROM events"
            f" WHERE stream_ordering IN ({placeholders(len(positions))})",
            *positions,
        )
        return {int(r[0]): r[1] for r in rows}

    async def get_references(self, parent_ids: Sequence[str]) -> dict[str, list[str]]:
        """``parent → the events referencing it`` (``m.reference``), oldest first."""
        found: dict[str, list[str]] = {}
        for chunk in in_chunks(list(dict.fromkeys(parent_ids)), _CHUNK):
            rows = await self.db.fetchall(
                "SELECT r.relates_to_id, e.event_id FROM event_relations r"
                " JOIN events e ON e.event_id = r.event_id"
                " JOIN events p ON p.event_id = r.relates_to_id AND p.room_id = e.room_id"
                f" WHERE r.relates_to_id IN ({placeholders(len(chunk))})"
                f" AND r.relation_type = ? AND {_LIVE} ORDER BY e.stream_ordering",
                *chunk,
                REFERENCE,
            )
            for parent_id, event_id in rows:
                found.setdefault(parent_id, []).append(event_id)
        return found

    async def is_relation_target(self, event_id: str, room_id: str) -> bool:
        """Whether an event of ``room_id`` already relates to ``event_id``."""
        return bool(
            await self.db.fetchval(
                "SELECT 1 FROM event_relations WHERE relates_to_id = ? AND room_id = ? LIMIT 1",
                event_id,
                room_id,
            )
        )

    async def get_relation_types(self, event_ids: Sequence[str]) -> dict[str, str]:
        """``event → the type of the relation it declares`` among ``event_ids``."""
        found: dict[str, str] = {}
        for chunk in in_chunks(list(dict.fromkeys(event_ids)), _CHUNK):
            rows = await self.db.fetchall(
                "SELECT event_id, relation_type FROM event_relations"
                f" WHERE event_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            found.update({r[0]: r[1] for r in rows})
        return found

    async def get_thread_roots(
        self, room_id: str, *, participant: str | None, before: int | None, limit: int
    ) -> list[tuple[str, int]]:
        """``(root, its newest reply's position)`` of the room's threads, the most recently
        replied to first, those whose newest reply is before ``before``; with
        ``participant``, only threads that user started or replied to."""
        having = ["MAX(e.stream_ordering) < ?"] if before is not None else []
        args: list[Any] = [room_id, THREAD]
        if participant is not None:
            having.append("MAX(CASE WHEN e.sender = ? OR p.sender = ? THEN 1 ELSE 0 END) = 1")
        having_args: list[Any] = [before] if before is not None else []
        if participant is not None:
            having_args += [participant, participant]
        rows = await self.db.fetchall(
            "SELECT r.relates_to_id, MAX(e.stream_ordering) FROM event_relations r"
            " JOIN events e ON e.event_id = r.event_id"
            " JOIN events p ON p.event_id = r.relates_to_id AND p.room_id = e.room_id"
            f" WHERE r.room_id = ? AND r.relation_type = ? AND {_LIVE}"
            " GROUP BY r.relates_to_id"
            + (f" HAVING {' AND '.join(having)}" if having else "")
            + " ORDER BY MAX(e.stream_ordering) DESC LIMIT ?",
            *args,
            *having_args,
            limit,
        )
        return [(r[0], int(r[1])) for r in rows]
