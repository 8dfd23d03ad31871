"""Whose device lists a user should fetch again, and whom they may stop tracking, between two
stream tokens: the ``device_lists`` section of /sync and GET /keys/changes.

* changed — users sharing a room with the requester now whose devices (or cross-signing keys)
  changed in the window (the requester's own changes included, as Synapse does), and users who
  started sharing a room in the window: the members of a room the requester joined, and whoever
  joined a room the requester is in. Their devices may be unknown to the client.
* left — users who shared a room with the requester at the window's start and share none now,
  through a membership change in the window (theirs, or the requester leaving).

Both sets are computed from current membership, so a race with a membership change can at
worst report a user once too often, never miss one.
"""

from __future__ import annotations

from collections.abc import Collection

from homeserver.storage import Store
from homeserver.streams.tokens import StreamToken

#: Up to this many device-list positions in the window, the users who changed are read
#: without a filter (at most about that many rows) and then intersected with the room-mates,
#: which need not be read at all when nothing moved; a wider window (an old token) asks only
#: for the room-mates' changes.
_SMALL_WINDOW = 1000


async def changed_and_left(
    store: Store, user_id: str, since: StreamToken, upto: StreamToken
) -> tuple[set[str], set[str]]:
    window = upto.device_lists - since.device_lists
    changed: set[str] = set()
    if 0 < window <= _SMALL_WINDOW:
        changed = await store.device_lists.get_changed_users(since.device_lists, upto.device_lists)
    started, stopped = await _membership_moves(store, user_id, since.events, upto.events)
    if not changed and not started and not stopped and window <= _SMALL_WINDOW:
        return set(), set()
    tracked = await store.device_lists.get_users_sharing_a_room(user_id) | {user_id}
    if window > _SMALL_WINDOW:
        changed = await store.device_lists.get_changed_users(
            since.device_lists, upto.device_lists, among=tracked
        )
    return (changed | started) & tracked, stopped - tracked


async def _membership_moves(
    store: Store, user_id: str, after: int, upto: int
) -> tuple[set[str], set[str]]:
    """(users who started sharing a room with ``user_id``, users who stopped sharing one) by
    membership events in ``(after, upto]``; "stopped" still has to be checked against the
    other rooms they share."""
    started: set[str] = set()
    stopped: set[str] = set()
    if after >= upto:
        return started, stopped
    joined_now = set(await store.state.get_rooms_for_user(user_id, "join"))
    own_rooms = {c.room_id for c in await store.sync.get_membership_changes(user_id, after, upto)}
    changes = await store.device_list_sharing.get_member_changes(
        joined_now | own_rooms, after, upto
    )
    for room_id, members in changes.items():
        state_then = await _state_at(store, room_id, after)
        was_joined = await _joined_among(store, state_then, [user_id])
        is_joined = room_id in joined_now
        if is_joined and not was_joined:
            # A room the user joined: everyone in it is new to them.
            started.update(await store.state.get_current_members(room_id, "join"))
        elif was_joined and not is_joined:
            # A room the user left: its members then are candidates for "left" (those still
            # there, and those who left in the window too).
            stopped.update(await store.state.get_current_members(room_id, "join"))
            stopped.update(await _joined_among(store, state_then, members))
        elif is_joined:
            members.discard(user_id)
            before = await _joined_among(store, state_then, members)
            now = set(await store.state.get_current_members(room_id, "join")) & members
            started |= now - before
            stopped |= before - now
    stopped.discard(user_id)
    return started, stopped


async def _state_at(store: Store, room_id: str, position: int) -> dict[tuple[str, str], str]:
    """The room's state at a stream position (empty when it had no event by then)."""
    event_id = await store.sync.get_last_event_id_at(room_id, position)
    if event_id is None:
        return {}
    return dict(await store.state.get_state_ids_at_event(event_id) or {})


async def _joined_among(
    store: Store, state: dict[tuple[str, str], str], user_ids: Collection[str]
) -> set[str]:
    """Which of ``user_ids`` are joined in ``state``."""
    member_ids = {
        event_id for u in user_ids if (event_id := state.get(("m.room.member", u))) is not None
    }
    if not member_ids:
        return set()
    found = await store.events.get_events(member_ids)
    return {
        e.state_key for e in found.values() if e.membership == "join" and e.state_key is not None
    }
