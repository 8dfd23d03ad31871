"""The full-text index of room events behind ``POST /search`` (migration 020).

Event persistence indexes each accepted timeline event's searchable field
(:data:`SEARCH_FIELDS`); a redaction removes the row. A query is a list of words, each matched
as a prefix, all required: on SQLite through FTS5 (``bm25`` for rank), on PostgreSQL through a
``tsvector`` under a GIN index (``ts_rank_cd``). Ranks are "higher is better" on both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Transaction, placeholders

#: event type → the content key indexed for it, as Synapse indexes them.
SEARCH_FIELDS: Mapping[str, str] = {
    "m.room.message": "body",
    "m.room.name": "name",
    "m.room.topic": "topic",
}


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What to look for and where: ``words`` (each a run of letters or digits, matched as a
    prefix, all required), in ``room_ids``, under ``keys`` (``content.body``…), optionally only
    from ``senders`` and never from ``not_senders``."""

    words: tuple[str, ...]
    room_ids: tuple[str, ...]
    keys: tuple[str, ...]
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SearchHit:
    event_id: str
    room_id: str
    stream_ordering: int
    rank: float


def search_row(event: Any) -> tuple[str, str, str, str, str, str, int, int] | None:
    """The index row of ``event``, or None when it has nothing to index."""
    internal = event.internal
    if (
        internal.outlier
        or internal.rejected_reason is not None
        or internal.soft_failed
        or internal.redacted
        or event.is_state() != (event.type != "m.room.message")
    ):
        return None
    field = SEARCH_FIELDS.get(event.type)
    content = event.content
    if field is None or not isinstance(content, Mapping):
        return None
    value = content.get(field)
    if not isinstance(value, str) or not value:
        return None
    return (
        event.event_id,
        event.room_id,
        event.sender,
        event.type,
        f"content.{field}",
        # PostgreSQL text cannot hold NUL, and it separates nothing worth finding.
        value.replace("\x00", " "),
        internal.stream_ordering,
        event.origin_server_ts,
    )


async def insert_search_rows_txn(
    txn: Transaction, events: Iterable[Any], orderings: Mapping[str, int]
) -> None:
    """Index the searchable events of a persisted batch (called from event persistence)."""
    rows = []
    for event in events:
        row = search_row(event)
        if row is not None:
            rows.append((*row[:6], orderings[event.event_id], row[7]))
    if not rows:
        return
    if txn.engine == "sqlite":
        # The row ID is the stream ordering (see the migration): recent-first reads the index.
        await txn.executemany(
            "INSERT INTO event_search (id, event_id, room_id, sender, type, key, value,"
            " stream_ordering, origin_server_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [(row[6], *row) for row in rows],
        )
        return
    await txn.executemany(
        "INSERT INTO event_search (event_id, room_id, sender, type, key, vector,"
        " stream_ordering, origin_server_ts)"
        " VALUES (?, ?, ?, ?, ?, to_tsvector('english', ?), ?, ?)"
        " ON CONFLICT (event_id) DO NOTHING",
        rows,
    )


async def delete_search_row_txn(txn: Transaction, event_id: str) -> None:
    """Forget a redacted event's text."""
    await txn.execute("DELETE FROM event_search WHERE event_id = ?", event_id)


def _match_expression(engine: str, words: Sequence[str]) -> str:
    # The words are runs of letters and digits (the request parser splits on anything else),
    # so quoting them cannot be escaped out of.
    if engine == "sqlite":
        return " AND ".join(f'"{word}"*' for word in words)
    return " & ".join(f"'{word}':*" for word in words)


class SearchStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _where(self, query: SearchQuery) -> tuple[str, str, list[Any]]:
        """``FROM … WHERE …`` matching ``query``, the rank expression and the arguments."""
        args: list[Any] = [_match_expression(self.db.engine, query.words)]
        if self.db.engine == "sqlite":
            # CROSS JOIN: SQLite's planner keeps the index as the outer loop (it would rather
            # walk the room's rows and probe the index once per row, far slower).
            source = (
                "event_search_fts CROSS JOIN event_search s ON s.id = event_search_fts.rowid"
                " WHERE event_search_fts MATCH ?"
            )
            rank = "-bm25(event_search_fts)"
        else:
            source = "event_search s, to_tsquery('english', ?) q WHERE s.vector @@ q"
            rank = "ts_rank_cd(s.vector, q)"
        clauses = [
            f"s.room_id IN ({placeholders(len(query.room_ids))})",
            f"s.key IN ({placeholders(len(query.keys))})",
        ]
        args += [*query.room_ids, *query.keys]
        if query.senders is not None:
            clauses.append(f"s.sender IN ({placeholders(len(query.senders))})")
            args += query.senders
        if query.not_senders:
            clauses.append(f"s.sender NOT IN ({placeholders(len(query.not_senders))})")
            args += query.not_senders
        return f"{source} AND " + " AND ".join(clauses), rank, args

    async def search_recent(
        self, query: SearchQuery, *, before: int | None, limit: int
    ) -> list[SearchHit]:
        """Matches newest first, with stream ordering below ``before`` (None: from the end)."""
        if not query.words or not query.room_ids or not query.keys:
            return []
        where, rank, args = self._where(query)
        # On SQLite the index's rowid is the stream ordering: ordering and bounding by it lets
        # FTS5 hand back the newest matches without reading them all.
        position = "event_search_fts.rowid" if self.db.engine == "sqlite" else "s.stream_ordering"
        if before is not None:
            where += f" AND {position} < ?"
            args.append(before)
        rows = await self.db.fetchall(
            f"SELECT s.event_id, s.room_id, s.stream_ordering, {rank} FROM {where}"
            f" ORDER BY {position} DESC LIMIT ?",
            *args,
            limit,
        )
        return [SearchHit(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

    async def search_ranked(
        self, query: SearchQuery, *, offset: int, limit: int
    ) -> list[SearchHit]:
        """Matches best first (newest first among equals), skipping the first ``offset``."""
        if not query.words or not query.room_ids or not query.keys:
            return []
        where, rank, args = self._where(query)
        rows = await self.db.fetchall(
            f"SELECT s.event_id, s.room_id, s.stream_ordering, {rank} AS r FROM {where}"
            " ORDER BY r DESC, s.stream_ordering DESC LIMIT ? OFFSET ?",
            *args,
            limit,
            offset,
        )
        return [SearchHit(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

    async def count_after(self, query: SearchQuery, after: Mapping[str, int]) -> int:
        """How many matches lie after ``after[room_id]`` in their room (rooms not named: none)."""
        rooms = [r for r in query.room_ids if r in after]
        if not query.words or not rooms or not query.keys:
            return 0
        where, _, args = self._where(
            SearchQuery(query.words, tuple(rooms), query.keys, query.senders, query.not_senders)
        )
        cases = " ".join("WHEN ? THEN CAST(? AS BIGINT)" for _ in rooms)
        return int(
            await self.db.fetchval(
                f"SELECT COUNT(*) FROM {where} AND s.stream_ordering > CASE s.room_id {cases} END",
                *args,
                *(v for room_id in rooms for v in (room_id, after[room_id])),
            )
            or 0
        )

    async def hits_up_to(
        self, query: SearchQuery, up_to: Mapping[str, int], *, limit: int
    ) -> list[SearchHit]:
        """Up to ``limit`` matches at or before ``up_to[room_id]`` in their room, newest first."""
        rooms = [r for r in query.room_ids if r in up_to]
        if not query.words or not rooms or not query.keys:
            return []
        where, rank, args = self._where(
            SearchQuery(query.words, tuple(rooms), query.keys, query.senders, query.not_senders)
        )
        cases = " ".join("WHEN ? THEN CAST(? AS BIGINT)" for _ in rooms)
        rows = await self.db.fetchall(
            f"SELECT s.event_id, s.room_id, s.stream_ordering, {rank} FROM {where}"
            f" AND s.stream_ordering <= CASE s.room_id {cases} END"
            " ORDER BY s.stream_ordering DESC LIMIT ?",
            *args,
            *(v for room_id in rooms for v in (room_id, up_to[room_id])),
            limit,
        )
        return [SearchHit(r[0], r[1], int(r[2]), float(r[3])) for r in rows]
