"""When a remote user's cached device list stops being trustworthy because of a join.

A remote server sends us ``m.device_list_update`` only while one of our users shares a room
with its user (and we drop the ones that arrive when none does). So once nobody here shares a
room with a remote user, their cached list (``remote_device_list_positions`` /
``remote_device_lists``) silently falls behind; it is right again only after a full resync.
The moment a join makes a remote user *start* sharing a room with a local user — the remote
user joins a room with local members, or a local user joins a room with remote members — their
cached list is marked stale, in the transaction that persists the join, so that the next key
query fetches it again instead of answering from it.

"Local user" here means a row in ``users`` (only this server's users have one), so the event
persister needs no server name. A remote user who already shared another room with a local user
kept receiving updates and stays fresh.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from homeserver.storage.database import Database, Transaction, placeholders

_CHUNK = 500

_ANY_FRESH_LIST = "SELECT 1 FROM remote_device_list_positions WHERE stale = FALSE LIMIT 1"

_LOCAL_JOINED_IN_ROOM = (
    "SELECT 1 FROM current_state_events c JOIN users u ON u.user_id = c.state_key"
    " WHERE c.room_id = ? AND c.type = 'm.room.member' AND c.membership = 'join'"
)

#: The tracked, fresh users of an UPDATE who share no room other than ``?`` with a local user.
_NO_OTHER_SHARED_ROOM = (
    " AND NOT EXISTS (SELECT 1 FROM current_state_events theirs"
    " JOIN current_state_events ours ON ours.room_id = theirs.room_id"
    " JOIN users u ON u.user_id = ours.state_key"
    " WHERE theirs.type = 'm.room.member' AND theirs.membership = 'join'"
    " AND theirs.state_key = remote_device_list_positions.user_id AND theirs.room_id <> ?"
    " AND ours.type = 'm.room.member' AND ours.membership = 'join')"
)


@dataclass(frozen=True, slots=True)
class JoinsBefore:
    """What the room looked like before a current-state update that adds joins."""

    room_id: str
    #: members whose membership becomes ``join`` and was not ``join`` before.
    newly_joined: list[str]
    #: whether a local user was joined to the room before the update.
    local_member_before: bool


async def joins_before_current_state_update_txn(
    txn: Transaction,
    room_id: str,
    joined: Collection[str],
    *,
    new_room: bool,
    already_joined: Collection[str] | None = None,
) -> JoinsBefore | None:
    """Call before the room's current state takes ``joined`` (state keys whose new membership
    is ``join``); None when none of them is a new join (nothing to invalidate).
    ``already_joined``: those of ``joined`` joined until now, when the caller has read them."""
    if not joined:
        return None
    # Most joins happen with no fresh cached list anywhere (no federation, or none fetched
    # yet): one cheap read then spares the join every other statement here.
    if await txn.fetchone(_ANY_FRESH_LIST) is None:
        return None
    if new_room:
        return JoinsBefore(room_id, sorted(set(joined)), False)
    keys = sorted(set(joined))
    if already_joined is None:
        already_joined = await _joined_among_txn(txn, room_id, keys)
    already = set(already_joined)
    newly = [k for k in keys if k not in already]
    if not newly:
        return None  # profile changes of members already joined
    local_before = await txn.fetchone(_LOCAL_JOINED_IN_ROOM + " LIMIT 1", room_id) is not None
    return JoinsBefore(room_id, newly, local_before)


async def _joined_among_txn(txn: Transaction, room_id: str, keys: list[str]) -> set[str]:
    joined: set[str] = set()
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        rows = await txn.fetchall(
            "SELECT state_key FROM current_state_events"
            " WHERE room_id = ? AND type = 'm.room.member' AND membership = 'join'"
            f" AND state_key IN ({placeholders(len(chunk))})",
            room_id,
            *chunk,
        )
        joined.update(r[0] for r in rows)
    return joined


async def mark_remote_device_lists_stale_on_new_sharing_txn(
    txn: Transaction, joins: JoinsBefore | None
) -> None:
    """Call after the current-state update: mark stale the cached device lists of the remote
    users that now share ``joins.room_id`` with a local user and shared no room with one
    before (rows that exist only; untracked users are fetched on first query anyway)."""
    if joins is None:
        return
    room_id = joins.room_id
    if joins.local_member_before:
        # Local members were here already: only the newly joined remote users start sharing.
        for start in range(0, len(joins.newly_joined), _CHUNK):
            chunk = joins.newly_joined[start : start + _CHUNK]
            await txn.execute(
                "UPDATE remote_device_list_positions SET stale = TRUE"
                f" WHERE stale = FALSE AND user_id IN ({placeholders(len(chunk))})"
                f" AND EXISTS ({_LOCAL_JOINED_IN_ROOM})" + _NO_OTHER_SHARED_ROOM,
                *chunk,
                room_id,
                room_id,
            )
        return
    # No local member before: if one joined now, every remote member starts sharing this room.
    await txn.execute(
        "UPDATE remote_device_list_positions SET stale = TRUE"
        " WHERE stale = FALSE AND user_id IN (SELECT state_key FROM current_state_events"
        " WHERE room_id = ? AND type = 'm.room.member' AND membership = 'join')"
        f" AND EXISTS ({_LOCAL_JOINED_IN_ROOM})" + _NO_OTHER_SHARED_ROOM,
        room_id,
        room_id,
        room_id,
    )


async def users_sharing_a_room_with_local_users(
    db: Database, user_ids: Collection[str]
) -> set[str]:
    """Those of ``user_ids`` joined to a room that a local user is joined to (now): the users
    whose servers keep us told about their devices."""
    ids = sorted(set(user_ids))
    sharing: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = await db.fetchall(
            "SELECT DISTINCT theirs.state_key FROM current_state_events theirs"
            " JOIN current_state_events ours ON ours.room_id = theirs.room_id"
            " JOIN users u ON u.user_id = ours.state_key"
            " WHERE theirs.type = 'm.room.member' AND theirs.membership = 'join'"
            f" AND theirs.state_key IN ({placeholders(len(chunk))})"
            " AND ours.type = 'm.room.member' AND ours.membership = 'join'",
            *chunk,
        )
        sharing.update(r[0] for r in rows)
    return sharing
