"""The /sync sections of out-of-band memberships: invites received over federation to rooms
this server is not in, knocks our users sent through another server, and the leaves that
rejected or withdrew them (``store.out_of_band``).

* ``invite`` — the stripped ``invite_room_state`` the inviting server sent, then the invite
  itself; all current ones on an initial (or ``full_state``) sync, else those since the token.
* ``knock`` — likewise, with the ``knock_room_state`` the resident answered ``send_knock`` with.
* ``leave`` — a rejection since the token (on an initial sync only with ``include_leave``):
  a timeline of the leave event alone, no state (we never had the room's state).
"""

from __future__ import annotations

from typing import Any

from homeserver.storage import Store
from homeserver.storage.out_of_band import OutOfBandMembership
from homeserver.sync.rooms import RoomSyncBuilder, SyncContext


async def _memberships(
    store: Store, ctx: SyncContext, membership: str
) -> list[OutOfBandMembership]:
    if ctx.since is None or (ctx.full_state and membership != "leave"):
        return await store.out_of_band.get_current(ctx.user_id, membership, ctx.now.events)
    changed = await store.out_of_band.get_changes(ctx.user_id, ctx.since.events, ctx.now.events)
    return [m for m in changed if m.membership == membership]


async def _pending(
    store: Store, rooms: RoomSyncBuilder, ctx: SyncContext, membership: str
) -> dict[str, Any]:
    """Invites or knocks: the stripped state kept in the event's ``unsigned``, then the event."""
    result: dict[str, Any] = {}
    for row in await _memberships(store, ctx, membership):
        if not ctx.filter.rooms.allows_room(row.room_id):
            continue
        event = await store.events.get_event(row.event_id)
        if event is None:
            continue
        room_state = event.unsigned.get(f"{membership}_room_state")
        stripped = (
            [e for e in room_state if isinstance(e, dict)] if isinstance(room_state, list) else []
        )
        events = [*stripped, *await rooms.serialize(ctx, [event])]
        result[row.room_id] = {f"{membership}_state": {"events": events}}
    return result


async def out_of_band_invites(
    store: Store, rooms: RoomSyncBuilder, ctx: SyncContext
) -> dict[str, Any]:
    return await _pending(store, rooms, ctx, "invite")


async def out_of_band_knocks(
    store: Store, rooms: RoomSyncBuilder, ctx: SyncContext
) -> dict[str, Any]:
    return await _pending(store, rooms, ctx, "knock")


async def out_of_band_leaves(
    store: Store, rooms: RoomSyncBuilder, ctx: SyncContext
) -> dict[str, Any]:
    if ctx.since is None and not ctx.filter.include_leave:
        return {}
    result: dict[str, Any] = {}
    for row in await _memberships(store, ctx, "leave"):
        if not ctx.filter.rooms.allows_room(row.room_id):
            continue
        leave = await store.events.get_event(row.event_id)
        if leave is None:
            continue
        result[row.room_id] = {
            "timeline": {"events": await rooms.serialize(ctx, [leave]), "limited": False},
            "state": {"events": []},
            "account_data": {"events": []},
        }
    return result
