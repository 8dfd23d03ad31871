"""State groups: the state of a room at a point, stored as "binary lifting" deltas.

Every state group has a *position*: the number of groups before it on its prev-path (the chain of
groups each was built on). A group built on nothing — the empty state before ``m.room.create``, or
a resolved state given without a base — has position 0 and stores its whole state. A group built
on ``prev`` has position ``p = position(prev) + 1`` and stores a delta (only the keys that change;
``event_id`` NULL removes a key) against its *base*: the ancestor on its prev-path at position
``p - lowbit(p)`` (``lowbit`` = the lowest set bit: ``p = 12`` → base at 8, ``p = 8`` → base at 0).

That base is always on ``prev``'s own base chain (``p - 1`` is the base's position plus
``lowbit(p) - 1``, whose bits the chain of ``prev`` clears one by one), so the writer finds it by
walking ``prev``'s base links and stores the merged deltas of the groups it walked past plus the
new delta — the keys whose value differs between the base and the new group. Hence:

* a group's delta has at most ``min(lowbit(p) · changes per group, state size)`` rows: a linear
  history of ``n`` single-key changes stores about ``log2(n) / 2`` rows per group on average,
  whatever the room's size, with no periodic snapshots;
* a group's base chain has at most ``popcount(p) <= log2(n) + 1`` links, so reading a group reads
  at most that many deltas, each no larger than the state: ``O(state size)`` rows typically and
  ``O(state size · log n)`` at worst — never a walk over the room's history.

A read is two queries: one recursive query over ``state_groups`` (by primary key) returning the
chain's group IDs, then the entries of those groups by the ``state_group_entries`` primary key.
If a group of the chain is cached, only the deltas above it are read.

Committed groups never change, so a small LRU of resolved groups is safe to share — it is only
filled from committed reads (a rolled-back SQLite transaction may reuse an ID). The room's current
state is cached under its current state group, so it too is invalidated by the group changing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from operator import itemgetter
from typing import Any, Protocol

from homeserver.events.event import Event
from homeserver.events.state_keys import StateKey
from homeserver.storage.database import Database, Row, Transaction, placeholders
from homeserver.storage.errors import UnknownStateGroupError
from homeserver.storage.events import EventsStore
from homeserver.storage.room_servers import is_server_joined

StateMap = dict[StateKey, str]
#: a delta: key → new event ID, or None to remove the key.
StateDelta = Mapping[StateKey, str | None]


class Reader(Protocol):
    """A ``Database`` or a ``Transaction``: anything that can run a SELECT."""

    async def fetchall(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...


#: a group and its base chain, newest first: only ``state_groups`` rows, by primary key.
_CHAIN_SQL = """
WITH RECURSIVE chain (id, base, position, depth) AS (
    SELECT id, base_group, position, 0 FROM state_groups WHERE id = ?
    UNION ALL
    SELECT g.id, g.base_group, g.position, c.depth + 1
    FROM chain c JOIN state_groups g ON g.id = c.base
)
SELECT id, position FROM chain ORDER BY depth
"""


_GROUP = itemgetter(0)
#: keys looked up per query (their types and state keys are parameters, with the chain's).
_KEY_CHUNK = 200


def lowbit(n: int) -> int:
    """The lowest set bit of ``n`` (0 for 0)."""
    return n & -n


def base_position(position: int) -> int:
    """The position of the base of a group at ``position`` (``position - lowbit(position)``)."""
    return position - lowbit(position)


@dataclass(frozen=True, slots=True)
class ChainLink:
    group: int
    position: int


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """What a writer needs of a group it (or this process) wrote: groups never change once
    committed, so these are kept to spare the chain query and delta reads of the next write."""

    position: int
    base: int | None
    entries: Mapping[StateKey, str | None]


@dataclass(slots=True)
class _WriteBuffer:
    groups: list[tuple[Any, ...]]
    entries: list[tuple[Any, ...]]


@dataclass(slots=True)
class StateGroupWrites:
    """The state groups one transaction writes (its ``txn.context`` slot)."""

    #: the groups written so far, kept by the store after commit.
    pending: dict[int, GroupRecord] = field(default_factory=dict)
    #: rows not yet inserted (None until the first group; flushed before commit).
    buffer: _WriteBuffer | None = None
    #: group IDs taken from the database and not yet used, the next one last.
    free_ids: list[int] = field(default_factory=list)
    #: SQLite: the last ID this transaction took (the next batch follows it).
    last_id: int | None = None
    #: about how many groups the writer will make, so the IDs are taken in one round trip.
    expected: int = 1
    #: full states read in this transaction (kept by the store after commit).
    read: dict[int, StateMap] = field(default_factory=dict)
    keeps_read: bool = False


#: groups with more entries than this are not kept in memory (they are rare: bases at high
#: powers of two), so the record cache stays small.
MAX_RECORD_ENTRIES = 512


def _writes(txn: Transaction) -> StateGroupWrites:
    return txn.context.setdefault(StateGroupWrites, StateGroupWrites)


def apply_delta(state: StateMap, delta: StateDelta) -> StateMap:
    """``state`` with ``delta`` applied (a new dict)."""
    result = dict(state)
    for key, event_id in delta.items():
        if event_id is None:
            result.pop(key, None)
        else:
            result[key] = event_id
    return result


def diff_states(
    old: Mapping[StateKey, str], new: Mapping[StateKey, str]
) -> dict[StateKey, str | None]:
    """The delta that turns ``old`` into ``new``."""
    delta: dict[StateKey, str | None] = {k: v for k, v in new.items() if old.get(k) != v}
    delta.update({k: None for k in old if k not in new})
    return delta


class StateStore:
    def __init__(self, db: Database, events: EventsStore, cache_size: int = 256) -> None:
        self.db = db
        self.events = events
        self._cache: OrderedDict[int, StateMap] = OrderedDict()
        self._cache_size = cache_size
        self._records: OrderedDict[int, GroupRecord] = OrderedDict()
        self._records_size = 8192

    def clear_cache(self) -> None:
        """Forget every cached state (benchmarks measuring cold reads; tests)."""
        self._cache.clear()
        self._records.clear()

    # --- reads -------------------------------------------------------------------------
    async def get_state_group_ids(
        self, state_group: int, *, txn: Transaction | None = None
    ) -> StateMap:
        """The full state of ``state_group``; raises :class:`UnknownStateGroupError`."""
        cached = self._cache.get(state_group)
        if cached is not None:
            self._cache.move_to_end(state_group)
            return dict(cached)
        if txn is None:
            state = await self._load(self.db.indexed, state_group)
            self._remember(state_group, state)
            return dict(state)
        read = self._read_in(txn)
        state = read.get(state_group) or await self._load(txn, state_group)
        read[state_group] = state
        return dict(state)

    def follow_txn(self, txn: Transaction, old: int, new: int, delta: StateDelta) -> None:
        """Say that group ``new`` is group ``old`` with ``delta`` applied (a room's current
        state moving on): if ``old``'s full state is known, ``new``'s is kept after commit, so
        the next transaction on the room — the next join of a flood — finds it in memory
        instead of reading the whole state back from the database. ``old``'s map is moved, not
        copied (a copy per join is O(members) again): the room has moved on from it, and a
        later read of it goes to the database."""
        read = self._read_in(txn)
        known = read.pop(old, None)
        if known is None:
            known = self._cache.pop(old, None)
        if known is None:
            return
        for key, event_id in delta.items():
            if event_id is None:
                known.pop(key, None)
            else:
                known[key] = event_id
        read[new] = known

    def _read_in(self, txn: Transaction) -> dict[int, StateMap]:
        """The full states ``txn`` has read or derived; they may be its own groups, so they are
        kept only once it commits."""
        writes = _writes(txn)
        if not writes.keeps_read:
            writes.keeps_read = True
            txn.call_after_commit(lambda: self._remember_all(writes.read))
        return writes.read

    def _remember_all(self, states: Mapping[int, StateMap]) -> None:
        for group, state in states.items():
            self._remember(group, state)

    async def get_state_groups_ids(self, state_groups: Iterable[int]) -> dict[int, StateMap]:
        return {g: await self.get_state_group_ids(g) for g in set(state_groups)}

    async def _chain(self, reader: Reader, state_group: int) -> list[ChainLink]:
        """``state_group`` and its base chain, newest first; raises if it does not exist."""
        if isinstance(reader, Transaction):
            await self.flush_txn(reader)
        rows = await reader.fetchall(_CHAIN_SQL, state_group)
        if not rows:
            raise UnknownStateGroupError(state_group)
        return [ChainLink(int(group), int(position)) for group, position in rows]

    async def _read_rows(self, reader: Reader, groups: list[int]) -> list[Row]:
        """``(state_group, type, state_key, event_id)`` rows of ``groups``, oldest group first
        when ``groups`` is a base chain (one query by the entries' primary key)."""
        if not groups:
            return []
        if isinstance(reader, Transaction):
            await self.flush_txn(reader)
        rows = await reader.fetchall(
            "SELECT state_group, type, state_key, event_id FROM state_group_entries"
            f" WHERE state_group IN ({placeholders(len(groups))})",
            *groups,
        )
        # A base is created before the groups stored against it, so along a chain IDs
        # decrease: sorting by ID puts the oldest delta first (stable, no per-row objects).
        if all(a > b for a, b in pairwise(groups)):
            rows.sort(key=_GROUP)
        else:  # not a chain in ID order (never expected): order by the given chain
            rank = {g: -i for i, g in enumerate(groups)}
            rows.sort(key=lambda row: rank[row[0]])
        return rows

    async def _load(self, reader: Reader, state_group: int) -> StateMap:
        chain = await self._chain(reader, state_group)
        # Start from the newest cached group of the chain, if any: only the deltas above it
        # are read. (The cache holds committed groups only, valid inside any transaction.)
        state: StateMap = {}
        to_read: list[int] = []
        for link in chain:
            cached = self._cache.get(link.group)
            if cached is not None:
                state = dict(cached)
                break
            to_read.append(link.group)
        for _group, event_type, state_key, event_id in await self._read_rows(reader, to_read):
            if event_id is None:
                state.pop((event_type, state_key), None)
            else:
                state[(event_type, state_key)] = event_id
        return state

    def _remember(self, state_group: int, state: StateMap) -> None:
        self._cache[state_group] = state
        self._cache.move_to_end(state_group)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def get_state_ids_at_event(
        self, event_id: str, *, before: bool = False
    ) -> StateMap | None:
        """The room state after ``event_id`` (``before=True``: just before it).

        After a state event its own entry is included; for a non-state or rejected event the
        state after equals the state before. None for an unknown event or an outlier (whose
        state this server does not know)."""
        groups = await self.get_state_group_for_events([event_id], before=before)
        group = groups.get(event_id)
        return None if group is None else await self.get_state_group_ids(group)

    # --- layout, for metrics, benchmarks and tests ---------------------------------------
    async def get_base_chain(self, state_group: int) -> list[int]:
        """``state_group`` followed by the groups its state is read through (its base, the
        base's base…, down to a group without a base). ``len - 1`` is its base-chain length."""
        return [link.group for link in await self._chain(self.db, state_group)]

    async def count_group_rows(self, state_group: int) -> int:
        """Rows stored for one group itself (its delta) — for tests and metrics."""
        return int(
            await self.db.fetchval(
                "SELECT COUNT(*) FROM state_group_entries WHERE state_group = ?", state_group
            )
        )

    async def group_stats(self, room_id: str) -> dict[str, Any]:
        """How the room's state groups are stored.

        ``groups``; ``state_events`` (groups made for a state event); ``rows`` (entry rows in
        all); ``root_groups`` / ``root_rows_max`` (groups without a base, which store their whole
        state: the room's first group, resolved states given without a base); ``delta_groups``,
        ``delta_rows`` and ``delta_rows_max`` (groups stored against a base);
        ``max_group_rows``; ``max_base_chain_length`` (most base links below one group)."""
        rows = await self.db.fetchall(
            "SELECT g.id, g.event_id, g.base_group, g.chain_length,"
            " (SELECT COUNT(*) FROM state_group_entries e WHERE e.state_group = g.id)"
            " FROM state_groups g WHERE g.room_id = ?",
            room_id,
        )
        roots = [int(n) for _g, _e, base, _c, n in rows if base is None]
        deltas = [int(n) for _g, _e, base, _c, n in rows if base is not None]
        return {
            "groups": len(rows),
            "state_events": sum(1 for _g, event_id, _b, _c, _n in rows if event_id is not None),
            "rows": sum(roots) + sum(deltas),
            "root_groups": len(roots),
            "root_rows": sum(roots),
            "root_rows_max": max(roots, default=0),
            "delta_groups": len(deltas),
            "delta_rows": sum(deltas),
            "delta_rows_max": max(deltas, default=0),
            "max_group_rows": max(roots + deltas, default=0),
            "max_base_chain_length": max((int(c) for _g, _e, _b, c, _n in rows), default=0),
        }

    # --- current state -------------------------------------------------------------------
    async def get_current_state_group(
        self, room_id: str, *, txn: Transaction | None = None
    ) -> int | None:
        """The group the room's current state equals (what the next local event builds on)."""
        group = await (txn or self.db.indexed).fetchval(
            "SELECT current_state_group FROM rooms WHERE room_id = ?", room_id
        )
        return None if group is None else int(group)

    async def get_current_state_ids(self, room_id: str) -> StateMap:
        """The room's current state (empty for an unknown room or one without state).

        Current state always equals the state of the room's current state group, so it is
        cached under that group: a change of current state changes the group."""
        group = await self.get_current_state_group(room_id)
        if group is not None:
            cached = self._cache.get(group)
            if cached is not None:
                self._cache.move_to_end(group)
                return dict(cached)
        # One statement, so the group and the rows come from one snapshot.
        rows = await self.db.fetchall(
            "SELECT r.current_state_group, c.type, c.state_key, c.event_id FROM rooms r"
            " LEFT JOIN current_state_events c ON c.room_id = r.room_id WHERE r.room_id = ?",
            room_id,
        )
        state: StateMap = {(t, sk): eid for _g, t, sk, eid in rows if t is not None}
        group = None if not rows or rows[0][0] is None else int(rows[0][0])
        if group is not None:
            self._remember(group, state)
        return dict(state)

    async def get_current_state_event_id(
        self, room_id: str, event_type: str, state_key: str = "", *, txn: Transaction | None = None
    ) -> str | None:
        return await (txn or self.db.indexed).fetchval(
            "SELECT event_id FROM current_state_events"
            " WHERE room_id = ? AND type = ? AND state_key = ?",
            room_id,
            event_type,
            state_key,
        )

    async def get_current_state_event(
        self, room_id: str, event_type: str, state_key: str = "", *, txn: Transaction | None = None
    ) -> Event | None:
        event_id = await self.get_current_state_event_id(room_id, event_type, state_key, txn=txn)
        if event_id is None:
            return None
        return (await self.events.get_events([event_id], txn=txn)).get(event_id)

    async def get_current_members(
        self, room_id: str, membership: str = "join", *, txn: Transaction | None = None
    ) -> list[str]:
        """User IDs whose current membership in ``room_id`` is ``membership``."""
        rows = await (txn or self.db).fetchall(
            "SELECT state_key FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member' AND membership = ?",
            room_id,
            membership,
        )
        return sorted(r[0] for r in rows)

    async def get_current_state_keyed(
        self, event_types: Iterable[str], state_key: str, *, txn: Transaction | None = None
    ) -> list[tuple[str, str, str]]:
        """``(room_id, type, event_id)`` of every room's current state event of one of
        ``event_types`` with ``state_key`` (e.g. the space links naming a room), sorted."""
        types = list(event_types)
        if not types:
            return []
        rows = await (txn or self.db.indexed).fetchall(
            "SELECT room_id, type, event_id FROM current_state_events"
            f" WHERE state_key = ? AND type IN ({placeholders(len(types))})",
            state_key,
            *types,
        )
        return sorted((r[0], r[1], r[2]) for r in rows)

    async def is_host_joined(self, room_id: str, server_name: str) -> bool:
        """Whether a user of ``server_name`` is joined to ``room_id`` in its current state."""
        return await is_server_joined(self.db, room_id, server_name)

    async def get_rooms_for_user(self, user_id: str, membership: str = "join") -> list[str]:
        rows = await self.db.fetchall(
            "SELECT room_id FROM current_state_events"
            " WHERE state_key = ? AND type = 'm.room.member' AND membership = ?",
            user_id,
            membership,
        )
        return sorted(r[0] for r in rows)

    async def get_rooms_by_membership(
        self, user_id: str, memberships: Iterable[str]
    ) -> dict[str, list[str]]:
        """``membership → rooms`` (sorted) of the user's current memberships among
        ``memberships``: :meth:`get_rooms_for_user` for several kinds in one query (/sync
        wants joins, invites and knocks on every request)."""
        wanted = list(memberships)
        found: dict[str, list[str]] = {membership: [] for membership in wanted}
        if not wanted:
            return found
        rows = await self.db.fetchall(
            "SELECT room_id, membership FROM current_state_events"
            " WHERE state_key = ? AND type = 'm.room.member'"
            f" AND membership IN ({placeholders(len(wanted))})",
            user_id,
            *wanted,
        )
        for row in rows:
            found[row[1]].append(row[0])
        for rooms in found.values():
            rooms.sort()
        return found

    async def get_state_group_for_events(
        self, event_ids: Iterable[str], *, before: bool = False
    ) -> dict[str, int]:
        """``event_id → state group`` after (or before) each event; outliers are left out."""
        side = 0 if before else 1
        return {
            e: groups[side] for e, groups in (await self.get_state_groups_around(event_ids)).items()
        }

    async def get_state_groups_around(self, event_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """``event_id → (group before, group after)``; outliers are left out."""
        ids = list(set(event_ids))
        if not ids:
            return {}
        rows = await self.db.indexed.fetchall(
            "SELECT event_id, state_group_before, state_group_after FROM event_to_state_groups"
            f" WHERE event_id IN ({placeholders(len(ids))})",
            *ids,
        )
        return {event_id: (int(before), int(after)) for event_id, before, after in rows}

    # --- writes (inside the caller's transaction) --------------------------------------
    async def create_state_group_txn(
        self,
        txn: Transaction,
        room_id: str,
        prev_group: int | None,
        delta: StateDelta,
        *,
        event_id: str | None = None,
    ) -> int:
        """A new group equal to ``prev_group`` (None: empty) plus ``delta``; returns its ID.

        Stored as a delta against the ancestor at position ``p - lowbit(p)`` (see the module
        docstring): ``delta`` merged over the deltas of the groups of ``prev_group``'s base
        chain above that ancestor."""
        writes = _writes(txn)
        pending = writes.pending
        if not pending:
            txn.call_after_commit(lambda: self._keep_records(pending))
        if prev_group is None:
            position, base, chain_length = 0, None, 0
            entries: dict[StateKey, str | None] = dict(delta)
        else:
            chain = await self._writer_chain(txn, prev_group, pending)
            position = chain[0].position + 1
            target = base_position(position)
            # Walk prev's base chain down to the target position. Any group of the chain would
            # give a correct delta; the target keeps deltas and chains logarithmic. (A chain
            # through groups written before positions existed ends at position 0.)
            depth = next(
                (i for i, link in enumerate(chain) if link.position <= target), len(chain) - 1
            )
            base = chain[depth].group
            chain_length = len(chain) - depth
            passed = [link.group for link in chain[:depth]]
            entries = await self._merged_entries(txn, passed, pending)
            entries.update(delta)
        group = await self._allocate_group_id(txn, writes)
        buffer = writes.buffer or self._new_buffer(txn, writes)
        buffer.groups.append((group, room_id, event_id, prev_group, base, position, chain_length))
        buffer.entries.extend((group, t, sk, eid) for (t, sk), eid in entries.items())
        pending[group] = GroupRecord(position, base, entries)
        return group

    async def get_state_entries_txn(
        self, txn: Transaction, state_group: int, keys: Iterable[StateKey]
    ) -> dict[StateKey, str]:
        """The events at ``keys`` in ``state_group`` (keys not set left out), without loading
        the whole state: along the group's base chain, newest first, the first delta that
        mentions a key decides. Served from memory (groups of this transaction, kept records,
        the cache) as far as it reaches, then one query per few hundred keys for the rest of
        the chain."""
        wanted = set(keys)
        whole = self._cache.get(state_group)
        if whole is not None:
            return {key: whole[key] for key in wanted if key in whole}
        found: dict[StateKey, str | None] = {}
        pending = _writes(txn).pending
        chain = await self._writer_chain(txn, state_group, pending)
        for index, link in enumerate(chain):
            if not wanted:
                break
            cached = self._cache.get(link.group)
            if cached is not None:
                found.update((key, cached.get(key)) for key in wanted)
                break
            record = self._record(link.group, pending)
            if record is None:
                rest = [later.group for later in chain[index:]]
                found.update(await self._entries_along(txn, rest, wanted))
                break
            for key in [k for k in wanted if k in record.entries]:
                found[key] = record.entries[key]
                wanted.discard(key)
        return {key: event_id for key, event_id in found.items() if event_id is not None}

    async def _entries_along(
        self, txn: Transaction, chain: list[int], keys: set[StateKey]
    ) -> dict[StateKey, str | None]:
        """For ``keys``, the entry of the newest group of ``chain`` (newest first) that has
        one (None: removed there)."""
        await self.flush_txn(txn)
        rank = {group: i for i, group in enumerate(chain)}
        best: dict[StateKey, tuple[int, str | None]] = {}
        ordered = sorted(keys)
        for start in range(0, len(ordered), _KEY_CHUNK):
            chunk = ordered[start : start + _KEY_CHUNK]
            types = sorted({t for t, _ in chunk})
            state_keys = sorted({k for _, k in chunk})
            # type IN × state_key IN may match pairs not asked for: they are dropped below.
            rows = await txn.fetchall(
                "SELECT state_group, type, state_key, event_id FROM state_group_entries"
                f" WHERE state_group IN ({placeholders(len(chain))})"
                f" AND type IN ({placeholders(len(types))})"
                f" AND state_key IN ({placeholders(len(state_keys))})",
                *chain,
                *types,
                *state_keys,
            )
            for group, event_type, state_key, event_id in rows:
                key = (event_type, state_key)
                if key not in keys:
                    continue
                seen = best.get(key)
                if seen is None or rank[int(group)] < seen[0]:
                    best[key] = (rank[int(group)], event_id)
        return {key: event_id for key, (_, event_id) in best.items()}

    # Groups are written in two statements per transaction, not two per group: IDs are taken
    # up front and the rows buffered until a read needs them or the transaction commits.
    def expect_groups_txn(self, txn: Transaction, count: int) -> None:
        """Say that ``txn`` will make about ``count`` groups (their IDs are taken at once)."""
        _writes(txn).expected = count

    async def _allocate_group_id(self, txn: Transaction, writes: StateGroupWrites) -> int:
        free = writes.free_ids
        if not free:
            wanted = max(1, writes.expected)
            writes.expected = 1
            if txn.engine == "postgres":
                rows = await txn.fetchall(
                    "SELECT nextval(pg_get_serial_sequence('state_groups', 'id'))"
                    " FROM generate_series(1, ?)",
                    wanted,
                )
                free.extend(int(r[0]) for r in rows)
            else:
                # SQLite has one writer at a time, which this transaction is.
                top = writes.last_id
                if top is None:
                    top = int(await txn.fetchval("SELECT COALESCE(MAX(id), 0) FROM state_groups"))
                free.extend(range(top + 1, top + 1 + wanted))
                writes.last_id = top + wanted
            free.reverse()  # taken from the end: popping the front of 10,000 IDs is quadratic
        return free.pop()

    def _new_buffer(self, txn: Transaction, writes: StateGroupWrites) -> _WriteBuffer:
        buffer = _WriteBuffer([], [])
        writes.buffer = buffer

        async def flush() -> None:
            await self.flush_txn(txn)

        txn.call_before_commit(flush)
        return buffer

    async def flush_txn(self, txn: Transaction) -> None:
        """Write the buffered groups of ``txn`` (before anything reads the group tables)."""
        writes = txn.context.get(StateGroupWrites)
        buffer = None if writes is None else writes.buffer
        if buffer is None or not buffer.groups:
            return
        groups, entries = buffer.groups[:], buffer.entries[:]
        buffer.groups.clear()
        buffer.entries.clear()
        await txn.executemany(
            "INSERT INTO state_groups"
            " (id, room_id, event_id, prev_state_group, base_group, position, chain_length)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            groups,
        )
        if entries:
            await txn.executemany(
                "INSERT INTO state_group_entries (state_group, type, state_key, event_id)"
                " VALUES (?, ?, ?, ?)",
                entries,
            )

    def _record(self, group: int, pending: Mapping[int, GroupRecord]) -> GroupRecord | None:
        return pending.get(group) or self._records.get(group)

    async def _writer_chain(
        self, txn: Transaction, group: int, pending: Mapping[int, GroupRecord]
    ) -> list[ChainLink]:
        """:meth:`_chain`, served from the records of groups written in this transaction or
        kept from earlier ones as far as they reach; the rest from the database."""
        links: list[ChainLink] = []
        current: int | None = group
        while current is not None:
            record = self._record(current, pending)
            if record is None:
                return links + await self._chain(txn, current)
            links.append(ChainLink(current, record.position))
            current = record.base
        return links

    async def _merged_entries(
        self, txn: Transaction, groups: list[int], pending: Mapping[int, GroupRecord]
    ) -> dict[StateKey, str | None]:
        """The deltas of ``groups`` (a base chain, newest first) merged, newer values winning."""
        records = [self._record(g, pending) for g in groups]
        if all(r is not None for r in records):
            merged: dict[StateKey, str | None] = {}
            for record in reversed(records):
                assert record is not None
                merged.update(record.entries)
            return merged
        return {
            (event_type, state_key): event_id
            for _group, event_type, state_key, event_id in await self._read_rows(txn, groups)
        }  # oldest first: newer values win

    def _keep_records(self, written: Mapping[int, GroupRecord]) -> None:
        for group, record in written.items():
            if len(record.entries) <= MAX_RECORD_ENTRIES:
                self._records[group] = record
        while len(self._records) > self._records_size:
            self._records.popitem(last=False)
