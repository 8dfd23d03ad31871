"""The admin API's view of the federation sender's destinations (``federation_destinations``,
the backoff state the sender keeps per remote server)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database

#: order_by value (Synapse's) → SQL column.
DESTINATION_ORDER_COLUMNS = {
    "destination": "destination",
    "retry_last_ts": "retry_last_ts",
    "retry_interval": "retry_interval_ms",
    "failure_ts": "failure_ts",
    # We do not track the last PDU a destination acknowledged: the name orders them.
    "last_successful_stream_ordering": "destination",
}


@dataclass(frozen=True, slots=True)
class DestinationRow:
    destination: str
    failure_ts: int | None
    retry_last_ts: int
    retry_interval_ms: int
    #: outbox entries waiting for it.
    queued: int


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_SELECT = (
    "SELECT d.destination, d.failure_ts, d.retry_last_ts, d.retry_interval_ms,"
    " (SELECT COUNT(*) FROM federation_outbox o WHERE o.destination = d.destination)"
    " FROM federation_destinations d"
)


def _row(r: tuple[Any, ...]) -> DestinationRow:
    return DestinationRow(
        str(r[0]),
        None if r[1] is None else int(r[1]),
        int(r[2]),
        int(r[3]),
        int(r[4]),
    )


class AdminDestinationsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_destinations(
        self,
        start: int,
        limit: int,
        *,
        order_by: str = "destination",
        backwards: bool = False,
        name: str | None = None,
    ) -> tuple[list[DestinationRow], int]:
        where, args = "", []
        if name:
            where = " WHERE d.destination LIKE ? ESCAPE '\\'"
            args.append(f"%{_like_escape(name)}%")
        total = int(
            await self.db.fetchval(f"SELECT COUNT(*) FROM federation_destinations d{where}", *args)
        )
        column = "d." + DESTINATION_ORDER_COLUMNS[order_by]
        direction = "DESC" if backwards else "ASC"
        rows = await self.db.fetchall(
            f"{_SELECT}{where} ORDER BY ({column}) IS NULL, {column} {direction},"
            " d.destination ASC LIMIT ? OFFSET ?",
            *args,
            limit,
            start,
        )
        return [_row(r) for r in rows], total

    async def get_destination(self, destination: str) -> DestinationRow | None:
        row = await self.db.fetchone(f"{_SELECT} WHERE d.destination = ?", destination)
        return None if row is None else _row(row)
