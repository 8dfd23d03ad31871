"""Wakes long-polling /sync requests when something new is stored.

Positions are the server's stream orderings (events) and other streams' counters; a waiter
sleeps until the position moves past the one it has seen, or its timeout ends. Everything a
waiter then reads comes from the database, so nothing correct depends on this process's memory
(DESIGN §7: other processes will call :meth:`notify` from Redis pub/sub).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Notifier:
    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self._generation = 0

    @property
    def generation(self) -> int:
        """A counter bumped at every notification (cheap to compare)."""
        return self._generation

    def notify(self, room_ids: Iterable[str] = (), user_ids: Iterable[str] = ()) -> None:
        """Something changed for these rooms/users: wake every waiter to re-check."""
        self._generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, seen_generation: int, timeout_seconds: float) -> bool:
        """Wait until a notification after ``seen_generation``; False on timeout."""
        if self._generation != seen_generation:
            return True
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_seconds)
        except TimeoutError:
            return False
        return True
