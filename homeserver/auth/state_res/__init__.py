"""State resolution: v1 (room v1), v2 (rooms v2-v11) and v2.1 (room v12).

Pure: the only I/O is through the ``fetch_events`` callable the caller passes in, which is
called with batches of event IDs and returns the events it knows (rejected ones included).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from homeserver.auth.state_res.loader import EventLoader, FetchEvents
from homeserver.auth.state_res.v1 import resolve_v1
from homeserver.auth.state_res.v2 import resolve_v2
from homeserver.room_versions import RoomVersion, StateResAlgorithm

__all__ = ["FetchEvents", "resolve_state"]


async def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[tuple[str, str], str]],
    fetch_events: FetchEvents,
) -> dict[tuple[str, str], str]:
    """Resolve ``state_sets`` (each ``(type, state_key) -> event_id``) into one state map.

    The algorithm is the room version's (``room_version.state_res``). Events that
    ``fetch_events`` does not return are skipped: a conflicted candidate nobody can fetch
    cannot win, and an unknown auth event is not used.
    """
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    loader = EventLoader(fetch_events)
    algorithm = room_version.state_res
    if algorithm is StateResAlgorithm.V1:
        return await resolve_v1(room_version, state_sets, loader)
    return await resolve_v2(
        room_version, state_sets, loader, v2_1=algorithm is StateResAlgorithm.V2_1
    )
