"""The state before and after a received event: the state after its prev event, or the
resolution of the states after its prevs (asking the origin for the state at prevs we lack),
and the room's current state when accepting the event leaves it forked.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from homeserver.auth.state_res import resolve_state
from homeserver.events.event import Event
from homeserver.events.state_keys import StateKey
from homeserver.federation.auth_chains import AuthChains
from homeserver.federation.client import FederationError
from homeserver.federation.pdu_checks import PduRejected
from homeserver.federation.remote_fetch import RemoteEventFetcher
from homeserver.room_versions import RoomVersion
from homeserver.storage import Store
from homeserver.storage.persist import ResolvedState, StateBefore
from homeserver.storage.state import StateMap


def state_after(state_before: Mapping[StateKey, str], event: Event) -> StateMap:
    """The state after ``event`` given the state before it (a rejected event changes none)."""
    state = dict(state_before)
    if event.is_state() and not event.rejected:
        state[event.state_tuple] = event.event_id
    return state


class ReceivedState:
    def __init__(self, store: Store, fetcher: RemoteEventFetcher, auth_chains: AuthChains) -> None:
        self.store = store
        self.fetcher = fetcher
        self.auth_chains = auth_chains

    async def state_before(
        self,
        origin: str,
        room_version: RoomVersion,
        event: Event,
        groups: Mapping[str, int],
    ) -> tuple[StateBefore, StateMap]:
        """The state before ``event`` as a persist spec and as a map (``groups``: the state
        groups of the prev events we have)."""
        prevs = event.prev_event_ids()
        known_groups = list(dict.fromkeys(groups[p] for p in prevs if p in groups))
        missing = [p for p in prevs if p not in groups]
        if not missing and len(known_groups) == 1:
            group = known_groups[0]
            return group, await self.store.state.get_state_group_ids(group)
        state_sets = [await self.store.state.get_state_group_ids(g) for g in known_groups]
        for prev_id in missing:
            state_sets.append(
                await self._state_after_remote_prev(origin, room_version, event, prev_id)
            )
        resolved = await resolve_state(room_version, state_sets, self._fetch_events)
        base = known_groups[0] if known_groups else None
        return ResolvedState(resolved, base_group=base), resolved

    async def _fetch_events(self, event_ids: Collection[str]) -> Mapping[str, Event]:
        return await self.store.events.get_events(event_ids)

    async def _state_after_remote_prev(
        self, origin: str, room_version: RoomVersion, event: Event, prev_id: str
    ) -> StateMap:
        """The state after a prev event we lack, from ``origin`` (its events stored as outliers)."""
        room_id = event.room_id
        try:
            state_ids, auth_ids = await self.fetcher.get_state_ids(origin, room_id, prev_id)
            wanted = set(state_ids) | set(auth_ids) | {prev_id}
            lacking = wanted - await self.store.events.get_event_ids_present(wanted)
            fetched = await self.fetcher.get_events(origin, room_version, room_id, prev_id, lacking)
        except FederationError as e:
            raise PduRejected(f"could not get the state at prev event {prev_id}: {e}") from None
        await self.auth_chains.persist_outliers(room_version, fetched)
        loaded = await self.store.events.get_events(set(state_ids) | {prev_id})
        if prev_id not in loaded:
            raise PduRejected(f"could not get prev event {prev_id}")
        state: StateMap = {}
        for event_id in state_ids:
            state_event = loaded.get(event_id)
            if state_event is None or not state_event.is_state():
                raise PduRejected(f"could not get state event {event_id} at {prev_id}")
            if not state_event.rejected:
                state[state_event.state_tuple] = event_id
        return state_after(state, loaded[prev_id])

    async def resolved_current_state(
        self,
        room_version: RoomVersion,
        event: Event,
        state_before: StateMap,
        extremities: Sequence[str],
    ) -> tuple[int | None, StateMap] | None:
        """When accepting ``event`` leaves the room with several forward extremities (given the
        room's ``extremities`` now), the resolution of the states at all of them (and the group
        to store it against); None when the event's own state after becomes the current state."""
        if event.rejected or event.internal.soft_failed:
            return None
        others = [e for e in extremities if e not in set(event.prev_event_ids())]
        if not others:
            return None
        groups = await self.store.state.get_state_group_for_events(others)
        state_sets = [state_after(state_before, event)]
        for group in dict.fromkeys(groups.values()):
            state_sets.append(await self.store.state.get_state_group_ids(group))
        new_event = {event.event_id: event}

        async def fetch(ids: Collection[str]) -> Mapping[str, Event]:
            found = dict(await self.store.events.get_events([i for i in ids if i not in new_event]))
            found.update({i: new_event[i] for i in ids if i in new_event})
            return found

        resolved = await resolve_state(room_version, state_sets, fetch)
        base = await self.store.state.get_current_state_group(event.room_id)
        return base, resolved
