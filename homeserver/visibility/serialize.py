"""Events as clients see them: redacted ones pruned, with ``unsigned.redacted_because``; a state
event that replaced another with ``unsigned.replaces_state`` and, where asked, that event's
``prev_content`` and ``prev_sender``.

Serialising decides nothing about who may see an event: callers pass events already judged by
:mod:`homeserver.visibility.client`. ``prev_content`` follows Synapse: it is added to the
timeline-like answers (/sync timelines, /messages, /context), not to state lists, and it is the
replaced event's content as it stands now — pruned if that event was redacted since — whoever
could see that event (as Synapse, which adds it from the event's persistence whatever the
requester's history visibility).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.events.client_format import serialize_event
from homeserver.events.event import Event
from homeserver.events.redaction import prune_event_dict
from homeserver.storage import Store


def _visible_content(event: Event) -> dict[str, Any]:
    if not event.internal.redacted:
        return event.content
    content = prune_event_dict(event.room_version, event.pdu).get("content")
    return content if isinstance(content, dict) else {}


async def serialize_for_client(
    store: Store, events: Sequence[Event], now_ms: int, *, prev_content: bool = False
) -> list[dict[str, Any]]:
    """Client JSON of ``events``; redacted ones pruned, with ``unsigned.redacted_because``;
    replaced state named in ``unsigned.replaces_state`` and, with ``prev_content``, shown
    (``unsigned.prev_content``, ``unsigned.prev_sender``)."""
    targets = [e.event_id for e in events if e.internal.redacted]
    because: dict[str, Event] = {}
    if targets:
        redaction_ids = await store.room_use.get_redaction_ids(targets)
        found = await store.events.get_events(redaction_ids.values())
        because = {t: found[r] for t, r in redaction_ids.items() if r in found}
    replaced: dict[str, Event] = {}
    if prev_content:
        replaced = await store.events.get_events(
            e.internal.replaces_state for e in events if e.internal.replaces_state is not None
        )
    out: list[dict[str, Any]] = []
    for event in events:
        unsigned: dict[str, Any] = {}
        replaces = event.internal.replaces_state
        if replaces is not None and event.is_state():
            unsigned["replaces_state"] = replaces
            prev = replaced.get(replaces)
            if prev is not None:
                unsigned["prev_content"] = _visible_content(prev)
                unsigned["prev_sender"] = prev.sender
        if not event.internal.redacted:
            out.append(serialize_event(event, now_ms, unsigned=unsigned))
            continue
        redaction = because.get(event.event_id)
        if redaction is not None:
            unsigned["redacted_because"] = serialize_event(redaction, now_ms)
        out.append(serialize_event(event, now_ms, redacted=True, unsigned=unsigned))
    return out
