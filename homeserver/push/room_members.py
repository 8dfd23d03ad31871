"""Who is joined in the state before an event, for the push evaluator, without reading the whole
member list for every event.

Reading it costs O(members) (every member event of the state, fetched and looked at); done for
each event, filling a room of N members cost O(N²) and an upgrade that moves N members into the
new room left O(N²) of work behind it. A state group never changes once written, so what was
found for one can be kept; and the state after an accepted state event is the state before it
with the event's own key set (storage/persist.py), so along a run of events — the common case:
joins one after another, a genesis, an upgrade — the members after an event follow from the
members before it and the event alone, in O(1).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from homeserver.events.event import Event
from homeserver.storage import Store

POWER_LEVELS_KEY = ("m.room.power_levels", "")


@dataclass(slots=True)
class MembersAt:
    """What the evaluator reads of one state: every joined user, the joined users of this
    server, and the power levels event."""

    joined: set[str] = field(default_factory=set)
    local: set[str] = field(default_factory=set)
    levels_id: str | None = None


class MembersAtGroups:
    """:class:`MembersAt` per state group, the most recently used ``size`` kept."""

    def __init__(self, store: Store, server_name: str, size: int = 64) -> None:
        self.store = store
        self._suffix = ":" + server_name
        self._size = size
        self._groups: OrderedDict[int, MembersAt] = OrderedDict()
        #: for tests: how many states were read in full (cache misses).
        self.loads = 0

    async def take(self, group: int) -> MembersAt:
        """The members of state group ``group``, taken out of the cache for the caller alone
        (a concurrent evaluation of the same group reads its own copy) until
        :meth:`give_back`."""
        found = self._groups.pop(group, None)
        return found if found is not None else await self._load(group)

    def give_back(self, event: Event, before: int, after: int, members: MembersAt) -> None:
        """Return what :meth:`take` gave for ``before``, kept as the members of ``after``: the
        group ``event`` made from it (equal to ``before`` for a message or a rejected event),
        updated in place by the event alone (copying a big room's sets for every event would
        be O(members) again)."""
        if after != before and event.state_key is not None and not event.rejected:
            if event.type == "m.room.member":
                user_id = event.state_key
                if event.content.get("membership") == "join":
                    members.joined.add(user_id)
                    if user_id.endswith(self._suffix):
                        members.local.add(user_id)
                else:
                    members.joined.discard(user_id)
                    members.local.discard(user_id)
            elif (event.type, event.state_key) == POWER_LEVELS_KEY:
                members.levels_id = event.event_id
        self._remember(after, members)

    def _remember(self, group: int, members: MembersAt) -> None:
        self._groups[group] = members
        self._groups.move_to_end(group)
        while len(self._groups) > self._size:
            self._groups.popitem(last=False)

    async def _load(self, group: int) -> MembersAt:
        self.loads += 1
        state = await self.store.state.get_state_group_ids(group)
        member_ids = [eid for (kind, _), eid in state.items() if kind == "m.room.member"]
        events = await self.store.events.get_events(member_ids)
        joined = {
            m.state_key
            for m in events.values()
            if m.state_key is not None and m.content.get("membership") == "join"
        }
        local = {u for u in joined if u.endswith(self._suffix)}
        return MembersAt(joined, local, state.get(POWER_LEVELS_KEY))
