"""Many-row inserts on PostgreSQL as one statement over arrays (issue 18).

asyncpg's ``executemany`` sends every row in one round trip, but the server still executes
the statement once per row. ``INSERT INTO t (a, b) SELECT * FROM unnest($1::text[],
$2::int8[]) AS u (a, b)`` executes once for all of them (a 2,000-member upgrade's
transaction: 307 → 248 ms; docs/performance.md, item 28). The rows go in in the same order,
and ``ON CONFLICT`` means what it did row by row, with one exception: ``DO UPDATE`` refuses
to touch a row twice in one statement, so a batch whose conflict keys repeat keeps the
row-by-row form (the last row wins there).

Only ``INSERT INTO t (columns) VALUES (?, …) [ON CONFLICT …]`` with a bare placeholder per
column qualifies; anything else keeps the row-by-row form. The array types are the parameter
types PostgreSQL gives the single-row statement, so they are always the columns' own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: smaller batches keep the row-by-row form and its cached prepared statement (a round
#: number, not a measured break-even: createRoom's and a send's batches stay below it).
BULK_ROWS = 64

_INSERT = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<table>\w+)\s*\((?P<columns>[\w\s,]+)\)\s*"
    r"VALUES\s*\((?P<values>[\s?,]+)\)(?P<tail>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_CONFLICT_UPDATE = re.compile(
    r"^\s*ON\s+CONFLICT\s*\((?P<target>[\w\s,]+)\)\s*DO\s+UPDATE\b", re.IGNORECASE | re.DOTALL
)


@dataclass(frozen=True, slots=True)
class InsertShape:
    table: str
    columns: tuple[str, ...]
    #: what follows ``VALUES (…)``: an ``ON CONFLICT`` clause or nothing.
    tail: str
    #: positions of the conflict target's columns when the clause is ``DO UPDATE``.
    update_key: tuple[int, ...] | None


def parse_insert(sql: str) -> InsertShape | None:
    """The shape of a one-row ``INSERT … VALUES (?, …)``; None for any other statement."""
    match = _INSERT.match(sql)
    if match is None:
        return None
    columns = tuple(c.strip() for c in match["columns"].split(","))
    placeholders = [v.strip() for v in match["values"].split(",")]
    if any(p != "?" for p in placeholders) or len(placeholders) != len(columns):
        return None
    tail = match["tail"].strip()
    if "?" in tail or (tail and not tail.upper().startswith("ON CONFLICT")):
        return None  # RETURNING and the like: not for executemany
    update_key = None
    update = _CONFLICT_UPDATE.match(tail)
    if update is not None:
        target = [c.strip() for c in update["target"].split(",")]
        if any(c not in columns for c in target):
            return None
        update_key = tuple(columns.index(c) for c in target)
    elif re.search(r"\bDO\s+UPDATE\b", tail, re.IGNORECASE):
        return None  # DO UPDATE without a column list (ON CONSTRAINT …): keep it row by row
    return InsertShape(match["table"], columns, tail, update_key)


def bulk_sql(shape: InsertShape, array_types: Sequence[str]) -> str:
    """The one statement inserting every row; ``array_types``: each column's type name."""
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(array_types, start=1))
    columns = ", ".join(shape.columns)
    sql = f"INSERT INTO {shape.table} ({columns}) SELECT * FROM unnest({arrays}) AS u ({columns})"
    return f"{sql} {shape.tail}" if shape.tail else sql


def fits_one_statement(shape: InsertShape, rows: Sequence[Sequence[Any]]) -> bool:
    """Whether the rows may go in as one statement (see the module docstring)."""
    if shape.update_key is None:
        return True
    keys = {tuple(row[i] for i in shape.update_key) for row in rows}
    return len(keys) == len(rows)


def columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """The rows turned into one list per column."""
    return [[row[i] for row in rows] for i in range(width)]
