"""The ephemeral parts of /sync: ``m.typing`` in each joined room's ``ephemeral`` section and
the top-level ``presence`` section, each as the filter allows (``room.ephemeral``,
``presence``)."""

from __future__ import annotations

from typing import Any

from homeserver.ephemeral.presence import PresenceService, presence_content
from homeserver.ephemeral.typing import TypingService
from homeserver.storage import Store
from homeserver.storage.presence import OFFLINE
from homeserver.sync.rooms import SyncContext

TYPING_TYPE = "m.typing"
PRESENCE_TYPE = "m.presence"


def typing_changes(
    typing: TypingService | None, ctx: SyncContext, room_ids: list[str]
) -> dict[str, list[str]]:
    """The rooms among ``room_ids`` whose typers changed since the token (all rooms with
    typing state on an initial sync), with their typers now."""
    if typing is None:
        return {}
    return typing.changes(room_ids, None if ctx.since is None else ctx.since.typing)


def typing_event(
    ctx: SyncContext, room_id: str, typers: list[str] | None, full: bool
) -> list[dict[str, Any]]:
    """The room's ``m.typing`` event: when its typers changed, and on a full sync of the room
    (an empty list then says nobody types)."""
    if typers is None and not full:
        return []
    if not ctx.filter.ephemeral.allows(TYPING_TYPE, room_id=room_id):
        return []
    return [{"type": TYPING_TYPE, "content": {"user_ids": typers or []}}]


async def presence_events(
    store: Store, presence: PresenceService | None, ctx: SyncContext
) -> list[dict[str, Any]]:
    """The presence of the user and of everyone sharing a joined room with them that changed
    since the token; an initial sync leaves offline users out (as Synapse)."""
    if presence is None or not presence.enabled:
        return []
    presence_filter = ctx.filter.presence
    if not presence_filter.allows(PRESENCE_TYPE):
        return []
    since = None if ctx.since is None or ctx.full_state else ctx.since.presence
    if since is not None and since >= ctx.now.presence:
        return []
    states = await store.presence.get_changes_for(ctx.user_id, since, ctx.now.presence)
    events = []
    for state in states:
        if since is None and state.state == OFFLINE:
            continue
        if not presence_filter.allows(PRESENCE_TYPE, sender=state.user_id):
            continue
        content = {"user_id": state.user_id, **presence_content(state, ctx.now_ms)}
        events.append({"type": PRESENCE_TYPE, "sender": state.user_id, "content": content})
    return events
