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
    store: Store, ctx: SyncContext, memberships: tuple[str, ...]
) -> list[OutOfBandMembership]:
    if ctx.since is None or (ctx.full_state and "leave" not in memberships):
        return await store.out_of_band.get_current_of(ctx.user_id, memberships, ctx.now.events)
    changed = await store.out_of_band.get_changes(ctx.user_id, ctx.since.events, ctx.now.events)
    return [m for m in changed if m.membership in memberships]


async def _pending_section(
    store: Store, rooms: RoomSyncBuilder, ctx: SyncContext, rows: list[OutOfBandMembership]
) -> dict[str, Any]:
    """Invites or knocks: the stripped state kept in the event's ``unsigned``, then the event."""
    result: dict[str, Any] = {}
    for row in rows:
        if not ctx.filter.rooms.allows_room(row.room_id):
            continue
        event = await store.events.get_event(row.event_id)
        if event is None:
            continue
        membership = row.membership
        room_state = event.unsigned.get(f"{membership}_room_state")
        stripped = (
            [e for e in room_state if isinstance(e, dict)] if isinstance(room_state, list) else []
        )
        events = [*stripped, *await rooms.serialize(ctx, [event])]
        result[row.room_id] = {f"{membership}_state": {"events": events}}
    return result


async def out_of_band_pending(
    store: Store, rooms: RoomSyncBuilder, ctx: SyncContext
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``invite`` and ``knock`` sections, from one read of the memberships for both."""
    rows = await _memberships(store, ctx, ("invite", "knock"))
    invites = [row for row in rows if row.membership == "invite"]
    knocks = [row for row in rows if row.membership == "knock"]
    return (
        await _pending_section(store, rooms, ctx, invites),
        await _pending_section(store, rooms, ctx, knocks),
    )


async def out_of_band_leaves(
    store: Store, rooms: RoomSyncBuilder, ctx: SyncContext
) -> dict[str, Any]:
    if ctx.since is None and not ctx.filter.include_leave:
        return {}
    result: dict[str, Any] = {}
    for row in await _memberships(store, ctx, ("leave",)):
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
