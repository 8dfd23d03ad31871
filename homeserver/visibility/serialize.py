"""Events as clients see them: redacted ones pruned, with ``unsigned.redacted_because``.

Serialising decides nothing about who may see an event: callers pass events already judged by
:mod:`homeserver.visibility.client`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.events.client_format import serialize_event
from homeserver.events.event import Event
from homeserver.storage import Store


async def serialize_for_client(
    store: Store, events: Sequence[Event], now_ms: int
) -> list[dict[str, Any]]:
    """Client JSON of ``events``; redacted ones pruned, with ``unsigned.redacted_because``."""
    targets = [e.event_id for e in events if e.internal.redacted]
    because: dict[str, Event] = {}
    if targets:
        redaction_ids = await store.room_use.get_redaction_ids(targets)
        found = await store.events.get_events(redaction_ids.values())
        because = {t: found[r] for t, r in redaction_ids.items() if r in found}
    out: list[dict[str, Any]] = []
    for event in events:
        if not event.internal.redacted:
            out.append(serialize_event(event, now_ms))
            continue
        unsigned: dict[str, Any] = {}
        redaction = because.get(event.event_id)
        if redaction is not None:
            unsigned["redacted_because"] = serialize_event(redaction, now_ms)
        out.append(serialize_event(event, now_ms, redacted=True, unsigned=unsigned))
    return out
