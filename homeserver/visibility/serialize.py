"""Events as clients see them: redacted ones pruned, with ``unsigned.redacted_because``; a state
event that replaced another with ``unsigned.replaces_state`` and, where asked, that event's
``prev_content`` and ``prev_sender``.

Serialising decides nothing about who may see an event: callers pass events already judged by
:mod:`homeserver.visibility.client`. ``prev_content`` follows Synapse: it is added to the
timeline-like answers (/sync timelines, /messages, /context), not to state lists, and it is the
replaced event's content as it stands now — pruned if that event was redacted since — whoever
could see that event (as Synapse, which adds it from the event's persistence whatever the
requester's history visibility).

Given the reader (``user_id``), each event carries its bundled aggregations in
``unsigned["m.relations"]`` (:mod:`homeserver.visibility.relations`): the reader's view of its
edit, thread and references.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.events.client_format import serialize_event
from homeserver.events.event import Event
from homeserver.events.redaction import prune_event_dict
from homeserver.storage import Store
from homeserver.visibility.relations import Bundle, bundled_aggregations


def _visible_content(event: Event) -> dict[str, Any]:
    if not event.internal.redacted:
        return event.content
    content = prune_event_dict(event.room_version, event.pdu).get("content")
    return content if isinstance(content, dict) else {}


async def _relations_json(
    store: Store, user_id: str, bundles: dict[str, Bundle], now_ms: int
) -> dict[str, dict[str, Any]]:
    """``event → unsigned["m.relations"]``; the nested events serialised for the same reader
    (a thread's latest reply with its own edit)."""
    nested = [b.edit for b in bundles.values() if b.edit is not None]
    latest = [b.thread.latest for b in bundles.values() if b.thread is not None]
    edits_json = {
        body["event_id"]: body for body in await serialize_for_client(store, nested, now_ms)
    }
    latest_json = {
        body["event_id"]: body
        for body in await serialize_for_client(
            store, latest, now_ms, user_id=user_id, edits_only=True
        )
    }
    out: dict[str, dict[str, Any]] = {}
    for event_id, bundle in bundles.items():
        relations: dict[str, Any] = {}
        if bundle.edit is not None:
            relations["m.replace"] = edits_json[bundle.edit.event_id]
        if bundle.thread is not None:
            relations["m.thread"] = {
                "latest_event": latest_json[bundle.thread.latest.event_id],
                "count": bundle.thread.count,
                "current_user_participated": bundle.thread.participated,
            }
        if bundle.references:
            relations["m.reference"] = {"chunk": [{"event_id": i} for i in bundle.references]}
        out[event_id] = relations
    return out


async def serialize_for_client(
    store: Store,
    events: Sequence[Event],
    now_ms: int,
    *,
    prev_content: bool = False,
    user_id: str | None = None,
    edits_only: bool = False,
) -> list[dict[str, Any]]:
    """Client JSON of ``events``; redacted ones pruned, with ``unsigned.redacted_because``;
    replaced state named in ``unsigned.replaces_state`` and, with ``prev_content``, shown
    (``unsigned.prev_content``, ``unsigned.prev_sender``); with the reader ``user_id``, the
    bundled aggregations (``edits_only``: the edit alone)."""
    relations: dict[str, dict[str, Any]] = {}
    if user_id is not None:
        bundles = await bundled_aggregations(store, user_id, events, edits_only=edits_only)
        if bundles:
            relations = await _relations_json(store, user_id, bundles, now_ms)
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
        bundle = relations.get(event.event_id)
        if bundle:
            unsigned["m.relations"] = bundle
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
