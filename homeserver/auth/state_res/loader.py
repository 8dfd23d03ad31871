"""Batched event loading for state resolution.

State resolution does no I/O of its own: it asks a ``fetch_events`` callable (supplied by the
storage layer) for events, many at a time. :class:`EventLoader` remembers what it has been given
and what is unknown, so no event is asked for twice, and walks auth chains breadth first: one
fetch per level of the auth DAG, never one per event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping

from homeserver.events.event import Event

#: The storage layer's event source: returns the events it knows among the given IDs.
FetchEvents = Callable[[Collection[str]], Awaitable[Mapping[str, Event]]]


class EventLoader:
    """A cache in front of ``fetch_events``; events it cannot get are remembered as missing."""

    def __init__(self, fetch_events: FetchEvents) -> None:
        self._fetch = fetch_events
        self._events: dict[str, Event] = {}
        self._missing: set[str] = set()
        #: events whose auth events have been loaded (see :meth:`load_auth_closure`).
        self._expanded: set[str] = set()

    def get(self, event_id: str) -> Event | None:
        """The event if it has been loaded, else ``None`` (never fetches)."""
        return self._events.get(event_id)

    def known(self, event_ids: Iterable[str]) -> list[Event]:
        """The loaded events among ``event_ids``, in the given order."""
        return [e for e in (self._events.get(i) for i in event_ids) if e is not None]

    async def load(self, event_ids: Iterable[str]) -> None:
        """Fetch, in one call, every event among ``event_ids`` not yet loaded or known missing."""
        wanted = {i for i in event_ids if i not in self._events and i not in self._missing}
        if not wanted:
            return
        fetched = await self._fetch(wanted)
        for event_id in wanted:
            event = fetched.get(event_id)
            if event is None or event.event_id != event_id:
                self._missing.add(event_id)
            else:
                self._events[event_id] = event

    async def load_auth_closure(self, event_ids: Iterable[str]) -> None:
        """Load ``event_ids`` and their whole auth chains, one fetch per BFS level."""
        frontier = {i for i in event_ids if i not in self._expanded}
        while frontier:
            await self.load(frontier)
            next_level: set[str] = set()
            for event_id in frontier:
                self._expanded.add(event_id)
                event = self._events.get(event_id)
                if event is None:
                    continue
                next_level.update(a for a in event.auth_event_ids() if a not in self._expanded)
            frontier = next_level

    def auth_events_of(self, event: Event) -> list[Event]:
        """The loaded auth events of ``event`` (missing ones are skipped)."""
        return self.known(event.auth_event_ids())

    def auth_event_of_type(self, event: Event, event_type: str) -> Event | None:
        """The first loaded auth event of ``event`` with this type and an empty state key."""
        for auth_event in self.auth_events_of(event):
            if auth_event.type == event_type and auth_event.state_key == "":
                return auth_event
        return None
