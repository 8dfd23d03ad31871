"""Bundled aggregations: what ``unsigned["m.relations"]`` says of each event a client is
handed — its latest edit (``m.replace``), its thread's summary (``m.thread``) and the events
referencing it (``m.reference``) — counting only what the reader may see.

As the spec (v1.7, MSC3925) and Synapse: the edit is bundled whole and the original's content is
left as it is; state events and events that are themselves an edit or an annotation get no
bundle; a redacted event gets no edit. The thread's ``count`` is the number of live replies (as
Synapse, not judged per reader), its ``latest_event`` the newest reply the reader may see (the
thread gets no summary if they see none), ``current_user_participated`` whether the reader sent
the root or a reply. Redacted relation events drop out in storage
(:mod:`homeserver.storage.relations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from homeserver.events.event import Event
from homeserver.events.relations import NO_BUNDLE_TYPES, REFERENCE, REPLACE, THREAD, relation_of
from homeserver.storage import Store
from homeserver.storage.relations import ThreadSummary
from homeserver.visibility.client import filter_events_for_client

#: replies looked at, newest first, for a thread whose newest reply the reader may not see.
_THREAD_SCAN = 50


@dataclass(frozen=True, slots=True)
class ThreadBundle:
    latest: Event
    count: int
    participated: bool


@dataclass(slots=True)
class Bundle:
    edit: Event | None = None
    thread: ThreadBundle | None = None
    references: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.edit is not None or self.thread is not None or bool(self.references)


def _bundles_allowed(event: Event) -> bool:
    if event.is_state():
        return False
    relation = relation_of(event.content)
    return relation is None or relation.rel_type not in NO_BUNDLE_TYPES


async def bundled_aggregations(
    store: Store, user_id: str, events: Sequence[Event], *, edits_only: bool = False
) -> dict[str, Bundle]:
    """``event → its bundle`` for the events of ``events`` that have one. ``edits_only``: the
    edit alone (a thread summary's latest event carries its own edit, nothing more)."""
    candidates = [e for e in events if _bundles_allowed(e)]
    if not candidates:
        return {}
    # Most events have no relation at all: one indexed read finds those that do.
    kinds = await store.relations.get_relation_kinds([e.event_id for e in candidates])
    if not kinds:
        return {}
    parents = [e for e in candidates if e.event_id in kinds]
    bundles: dict[str, Bundle] = {}

    unredacted = [
        e.event_id for e in parents if not e.internal.redacted and REPLACE in kinds[e.event_id]
    ]
    edits = await store.relations.get_latest_edits(unredacted) if unredacted else {}
    if edits:
        found = await store.events.get_events(edits.values())
        seen = {
            e.event_id for e in await filter_events_for_client(store, user_id, list(found.values()))
        }
        for parent_id, edit_id in edits.items():
            if edit_id in seen:
                bundles.setdefault(parent_id, Bundle()).edit = found[edit_id]
    if edits_only:
        return bundles

    roots = [e for e in parents if THREAD in kinds[e.event_id]]
    for root_id, thread in (await _threads(store, user_id, roots)).items():
        bundles.setdefault(root_id, Bundle()).thread = thread
    referenced = [e.event_id for e in parents if REFERENCE in kinds[e.event_id]]
    references = await store.relations.get_references(referenced) if referenced else {}
    if references:
        found = await store.events.get_events(i for refs in references.values() for i in refs)
        seen = {
            e.event_id for e in await filter_events_for_client(store, user_id, list(found.values()))
        }
        for parent_id, refs in references.items():
            shown = [i for i in refs if i in seen]
            if shown:
                bundles.setdefault(parent_id, Bundle()).references = shown
    return {k: v for k, v in bundles.items() if v}


async def _threads(store: Store, user_id: str, parents: Sequence[Event]) -> dict[str, ThreadBundle]:
    if not parents:
        return {}
    summaries = await store.relations.get_thread_summaries([e.event_id for e in parents], user_id)
    if not summaries:
        return {}
    found = await store.events.get_events(s.latest_id for s in summaries.values())
    seen = {
        e.event_id: e for e in await filter_events_for_client(store, user_id, list(found.values()))
    }
    rooms = {e.event_id: e.room_id for e in parents}
    threads: dict[str, ThreadBundle] = {}
    for root_id, summary in summaries.items():
        latest = seen.get(summary.latest_id)
        if latest is None:
            # Rare: the newest reply is hidden from this reader; look further back.
            latest = await _newest_visible_reply(store, user_id, rooms[root_id], root_id, summary)
        if latest is not None:
            threads[root_id] = ThreadBundle(latest, summary.count, summary.participated)
    return threads


async def _newest_visible_reply(
    store: Store, user_id: str, room_id: str, root_id: str, summary: ThreadSummary
) -> Event | None:
    rows = await store.relations.get_children(
        room_id,
        root_id,
        rel_type=THREAD,
        event_type=None,
        after=0,
        up_to=summary.latest_position - 1,
        backwards=True,
        limit=_THREAD_SCAN,
    )
    found = await store.events.get_events(i for i, _ in rows)
    visible = await filter_events_for_client(
        store, user_id, [found[i] for i, _ in rows if i in found]
    )
    return visible[0] if visible else None
