"""Lazy-loading room members in /sync (a filter's ``room.state.lazy_load_members``).

With lazy loading the state section of a room carries, of all the ``m.room.member`` events,
only those the client needs to show the timeline (the spec's "Lazy-loading room members"):

* the member event of each timeline sender whose membership does not already come earlier in
  the timeline itself (Synapse's rule for the ``state`` section);
* on a full-state sync (initial, ``full_state``, a room newly joined), the syncing user's own;
* the members named as the room's heroes, so the client can name an unnamed room.

Without ``include_redundant_members`` a member event already sent to this device is not sent
again. As in Synapse, the server remembers per (user, device) the member event it last sent for
each user (at most :data:`MEMBERS_PER_DEVICE`, least recently used first out, for
:data:`REMEMBER_MS`), forgets it all at an initial sync (a client without a ``since`` token has
lost what it had), and an entry pushed out of that memory means the member is merely sent again.
Member events the filter hides are neither sent nor remembered.

Which member changes still go out whole: a gappy (``limited``) incremental sync sends every
state change since the last sync, members included, as Synapse does (the client cannot tell
what happened in the gap otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from homeserver.bounded_cache import BoundedTtlCache
from homeserver.clock import WallClock
from homeserver.events.event import Event
from homeserver.storage.state import StateMap

MEMBER = "m.room.member"
#: Member events remembered per device (Synapse's LAZY_LOADED_MEMBERS_CACHE_MAX_SIZE).
MEMBERS_PER_DEVICE = 100
#: How long a device's memory lasts after its last use (Synapse: 30 minutes).
REMEMBER_MS = 30 * 60 * 1000
#: Devices remembered at once; beyond this the least recently syncing one is forgotten (its
#: next lazy sync then resends members it already has, which is harmless).
MAX_DEVICES = 2_000


def members_needed(timeline: Sequence[Event]) -> set[str]:
    """The timeline senders whose member event must come from the state section: those whose
    own member event does not come before (or with) their first event in the timeline."""
    needed: set[str] = set()
    set_in_timeline: set[str] = set()
    for event in timeline:
        if event.sender not in set_in_timeline:
            needed.add(event.sender)
        if event.type == MEMBER and event.state_key is not None:
            set_in_timeline.add(event.state_key)
    return needed


def keep_members(state: StateMap, wanted: Iterable[str]) -> StateMap:
    """``state`` with only the member events of ``wanted`` users (other state untouched)."""
    users = set(wanted)
    return {key: eid for key, eid in state.items() if key[0] != MEMBER or key[1] in users}


class SentMembers:
    """What member events each (user, device) was sent by lazy-loading syncs."""

    def __init__(self, clock: WallClock) -> None:
        self._clock = clock
        self._devices: BoundedTtlCache[tuple[str, str | None], BoundedTtlCache[str, str]] = (
            BoundedTtlCache(MAX_DEVICES, REMEMBER_MS, clock)
        )

    def for_device(self, user_id: str, device_id: str | None) -> BoundedTtlCache[str, str]:
        key = (user_id, device_id)
        sent = self._devices.get(key)
        if sent is None:
            sent = BoundedTtlCache(MEMBERS_PER_DEVICE, REMEMBER_MS, self._clock)
        # Set again on every use: the device's memory lives on while it keeps syncing.
        self._devices.set(key, sent)
        return sent

    def forget(self, user_id: str, device_id: str | None) -> None:
        """A new sync sequence (no ``since``): the client kept nothing."""
        self._devices.pop((user_id, device_id))
