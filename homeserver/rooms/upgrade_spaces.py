"""Space links follow our upgrades (issue 14): inside the upgrade's transaction, every room on
this server that links to the old room — a space listing it as a child (``m.space.child``), a
room naming it as its parent (``m.space.parent``) — is pointed at the replacement instead.

For each such room that is not itself tombstoned (a dead space's links do not matter; its
successor already has copies) the link is re-sent under the new room ID with the old content
(``via``, ``order``, ``suggested``, ``canonical``) and the old one is cleared (empty content, as
the spec removes a link). The events are sent as the upgrader when they are joined there with
the power to send that link type, else as the most powerful local joined member who has it —
"where we can edit". A room none of our users can edit keeps its link (nothing is forged: the
auth rules check every event as built). The copies of the old room's own links into the new
room are the plan's (``upgrade_plan.py``).

Synapse moves neither kind of link; clients (Element) look for ``m.space.child`` in the parent
and ``m.space.parent`` in the child, so both must follow.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.auth.power_levels import required_power_level, user_power_level
from homeserver.auth.rules import AuthError
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.events.state_keys import CREATE_KEY, POWER_LEVELS_KEY
from homeserver.events.validation import EventValidationError
from homeserver.room_versions import get_room_version
from homeserver.rooms.lifecycle import RoomStatus
from homeserver.rooms.sender import EventSender
from homeserver.rooms.upgrade_plan import SPACE_CHILD, SPACE_PARENT
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.types import domain_of

logger = logging.getLogger(__name__)

LINK_TYPES = (SPACE_CHILD, SPACE_PARENT)


@dataclass(frozen=True, slots=True)
class LinkEdit:
    """One room's link to the old room, to be moved to the new one."""

    event_type: str
    content: Mapping[str, Any]


def link_drafts(
    sender: str, old_room_id: str, new_room_id: str, edits: Iterable[LinkEdit]
) -> list[EventDraft]:
    """The new links (copies of the old content) then the old ones cleared, per link type."""
    drafts: list[EventDraft] = []
    for edit in edits:
        drafts.append(EventDraft(edit.event_type, sender, dict(edit.content), new_room_id))
        drafts.append(EventDraft(edit.event_type, sender, {}, old_room_id))
    return drafts


def pick_editor(candidates: Iterable[str], power_of: Mapping[str, int], needed: int) -> str | None:
    """The first candidate with at least ``needed`` power; ``candidates`` in preference order
    (the upgrader first)."""
    for user_id in candidates:
        if power_of.get(user_id, -1) >= needed:
            return user_id
    return None


class SpaceLinks:
    def __init__(self, store: Store, sender: EventSender, server_name: str) -> None:
        self.store = store
        self.sender = sender
        self.server_name = server_name

    async def linking_rooms(
        self, room_id: str, *, txn: Transaction | None = None
    ) -> frozenset[str]:
        """The rooms whose current state links to ``room_id`` (their rows are locked with the
        old room's before the upgrade commits)."""
        rows = await self.store.state.get_current_state_keyed(LINK_TYPES, room_id, txn=txn)
        return frozenset(linking for linking, _type, _id in rows if linking != room_id)

    async def follow_txn(
        self, txn: Transaction, old_room_id: str, new_room_id: str, upgrader: str
    ) -> list[Event]:
        """Move every link to ``old_room_id`` that our users may edit; the events sent."""
        rows = await self.store.state.get_current_state_keyed(LINK_TYPES, old_room_id, txn=txn)
        links = await self.store.events.get_events([event_id for *_, event_id in rows], txn=txn)
        edits: dict[str, list[LinkEdit]] = defaultdict(list)
        for room_id, event_type, event_id in rows:
            event = links.get(event_id)
            if room_id not in (old_room_id, new_room_id) and event and event.content:
                edits[room_id].append(LinkEdit(event_type, event.content))
        sent: list[Event] = []
        for room_id, room_edits in sorted(edits.items()):
            sent += await self._edit_room_txn(
                txn, room_id, upgrader, room_edits, old_room_id, new_room_id
            )
        return sent

    async def _edit_room_txn(
        self,
        txn: Transaction,
        room_id: str,
        upgrader: str,
        edits: list[LinkEdit],
        old_room_id: str,
        new_room_id: str,
    ) -> list[Event]:
        room = await self.store.rooms.get_room(room_id, txn=txn)
        if room is None or room.status == RoomStatus.TOMBSTONED:
            return []
        version = get_room_version(room.room_version)
        state = self.store.state
        create = await state.get_current_state_event(room_id, *CREATE_KEY, txn=txn)
        power_levels = await state.get_current_state_event(room_id, *POWER_LEVELS_KEY, txn=txn)
        joined = await state.get_current_members(room_id, txn=txn)
        local = [u for u in joined if domain_of(u) == self.server_name]
        power = {u: user_power_level(version, u, create, power_levels) for u in local}
        # The upgrader first, then the most powerful local member (ties by user ID).
        candidates = sorted(local, key=lambda u: (u != upgrader, -power[u], u))
        drafts: list[EventDraft] = []
        for event_type in sorted({edit.event_type for edit in edits}):
            needed = required_power_level(version, event_type, True, power_levels)
            editor = pick_editor(candidates, power, needed)
            if editor is None:
                logger.info(
                    "room upgrade of %s: no local user may move its %s in %s",
                    old_room_id,
                    event_type,
                    room_id,
                )
                continue
            of_type = [edit for edit in edits if edit.event_type == event_type]
            drafts += link_drafts(editor, old_room_id, new_room_id, of_type)
        if not drafts:
            return []
        try:
            return await self.sender.send_txn(txn, room, drafts)
        except (AuthError, EventValidationError) as e:
            # Built before anything is written: the room keeps its old links.
            logger.warning("room upgrade of %s: links in %s not moved: %s", old_room_id, room_id, e)
            return []
