"""Stored /sync filters (``POST /user/{userId}/filter``)."""

from __future__ import annotations

from typing import Any

from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.storage.database import Database


class FiltersStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_filter(self, user_id: str, definition: dict[str, Any]) -> str:
        """Store ``definition`` for ``user_id``; returns its filter ID."""
        async with self.db.transaction("add_filter") as txn:
            filter_id = await txn.fetchval(
                "INSERT INTO user_filters (user_id, filter_json) VALUES (?, ?) RETURNING filter_id",
                user_id,
                canonical_json_text(definition),
            )
        return str(filter_id)

    async def get_filter(self, user_id: str, filter_id: str) -> dict[str, Any] | None:
        """The filter ``filter_id`` of ``user_id``; None if unknown (or not a filter ID)."""
        # IDs are decimal integers; anything else (or one past BIGINT) cannot be ours.
        if not filter_id.isascii() or not filter_id.isdigit() or len(filter_id) > 18:
            return None
        text = await self.db.fetchval(
            "SELECT filter_json FROM user_filters WHERE filter_id = ? AND user_id = ?",
            int(filter_id),
            user_id,
        )
        if text is None:
            return None
        value = parse_json(text)
        return value if isinstance(value, dict) else None
