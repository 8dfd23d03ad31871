"""Wakes long-polling /sync requests when something new is stored.

Positions are the server's stream orderings (events) and other streams' counters; a waiter
sleeps until the position moves past the one it has seen, or its timeout ends. Everything a
waiter then reads comes from the database, so nothing correct depends on this process's memory.

With several processes (``streams/redis_bus.py``) every :meth:`notify` is also handed to the
publishers, which tell the other processes; what they tell this one arrives through
:meth:`notify_local`, which wakes this process's waiters and listeners without publishing again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from homeserver.streams.waiting import wait_event

#: Told the rooms of each notification (background steps that follow the events stream).
RoomsListener = Callable[[list[str]], None]
#: Told every local notification (rooms, users), to pass on to the other processes.
Publisher = Callable[[list[str], list[str]], None]

#: In a listener's room list: "some room may have changed" (a process that lost track of the
#: others' notifications, e.g. while Redis was unreachable, found the events stream moved).
ANY_ROOM = "*"


class Notifier:
    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self._generation = 0
        # How many waiters are parked now, and an event swapped at every park: a test awaits
        # parked() to know a long poll really waits instead of sleeping and hoping it does.
        self._waiters = 0
        self._parked = asyncio.Event()
        self._listeners: list[RoomsListener] = []
        self._publishers: list[Publisher] = []

    def add_publisher(self, publisher: Publisher) -> None:
        self._publishers.append(publisher)

    def add_listener(self, listener: RoomsListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: RoomsListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def generation(self) -> int:
        """A counter bumped at every notification (cheap to compare)."""
        return self._generation

    @property
    def waiters(self) -> int:
        """How many waiters are parked in :meth:`wait` now."""
        return self._waiters

    async def parked(self, count: int = 1) -> None:
        """Return once at least ``count`` waiters are parked in :meth:`wait`."""
        while self._waiters < count:
            await self._parked.wait()

    def notify(self, room_ids: Iterable[str] = (), user_ids: Iterable[str] = ()) -> None:
        """Something changed for these rooms/users: wake every waiter to re-check, here and
        (through the publishers) in every other process."""
        rooms, users = list(room_ids), list(user_ids)
        self.notify_local(rooms, users)
        for publisher in self._publishers:
            publisher(rooms, users)

    def notify_local(self, room_ids: Iterable[str] = (), user_ids: Iterable[str] = ()) -> None:
        """Wake this process's waiters and room listeners only."""
        self._generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        rooms = list(room_ids)
        if rooms:
            for listener in list(self._listeners):
                listener(rooms)

    async def wait(self, seen_generation: int, timeout_seconds: float) -> bool:
        """Wait until a notification after ``seen_generation``; False on timeout."""
        if self._generation != seen_generation:
            return True
        self._waiters += 1
        parked, self._parked = self._parked, asyncio.Event()
        parked.set()
        try:
            return await wait_event(self._changed, timeout_seconds)
        finally:
            self._waiters -= 1
