"""Redactions applied at persistence, whichever path stored them (a client's, or one received
over federation): the ``redactions`` row and the target's ``redacted`` flag, so a redacted
message is served pruned and a redacted edit or thread reply drops out of the relations.

A stored, accepted (not soft-failed) redaction applies to a target in its own room when its
sender had the room's ``redact`` level — read from the power levels among the redaction's own
auth events, the state its acceptance was judged against — or when the target was sent from the
redaction sender's own server (the spec's rule for room versions 3 and later, where the auth
rules accept any redaction and leave this check to the server applying it; Synapse's
``recheck_redaction``). A redaction that arrives before its target is kept in ``redactions`` and
applied when the target is stored.
"""

from __future__ import annotations

from collections.abc import Iterable

from homeserver.auth.power_levels import named_power_level, user_power_level
from homeserver.events.event import Event
from homeserver.events.state_keys import CREATE_KEY, POWER_LEVELS_KEY
from homeserver.storage.database import Transaction, placeholders
from homeserver.storage.events import EventsStore
from homeserver.storage.search import delete_search_row_txn


async def mark_redacted_txn(txn: Transaction, event_id: str) -> bool:
    """Flag ``event_id`` as redacted (served pruned, out of the relations) and drop its text
    from the search index; the caller invalidates the event cache after commit."""
    changed = await txn.execute(
        "UPDATE events SET redacted = TRUE WHERE event_id = ? AND redacted = FALSE", event_id
    )
    await delete_search_row_txn(txn, event_id)
    return bool(changed == 1)


def _domain(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def _applies(redaction: Event) -> bool:
    return (
        redaction.type == "m.room.redaction"
        and redaction.redacts is not None
        and redaction.internal.rejected_reason is None
        and not redaction.internal.soft_failed
        and not redaction.internal.outlier
    )


async def _may_redact_others(txn: Transaction, events_store: EventsStore, redaction: Event) -> bool:
    """Whether the redaction's sender held the ``redact`` level in the state its auth events
    name (the power levels and create event it was accepted against)."""
    auth = await events_store.get_events(redaction.auth_event_ids(), txn=txn)
    by_key = {(e.type, e.state_key): e for e in auth.values() if e.state_key is not None}
    version = redaction.room_version
    power_levels = by_key.get(POWER_LEVELS_KEY)
    sender_level = user_power_level(version, redaction.sender, by_key.get(CREATE_KEY), power_levels)
    return sender_level >= named_power_level(version, "redact", power_levels)


async def _late_redactions(
    txn: Transaction, events_store: EventsStore, stored: list[Event]
) -> list[Event]:
    """Redactions stored earlier whose target is among ``stored`` (they arrived first)."""
    ids = [e.event_id for e in stored if e.type != "m.room.redaction"]
    if not ids:
        return []
    rows = await txn.fetchall(
        f"SELECT event_id FROM redactions WHERE redacts IN ({placeholders(len(ids))})", *ids
    )
    if not rows:
        return []
    found = await events_store.get_events([r[0] for r in rows], txn=txn)
    return [e for e in found.values() if _applies(e)]


async def apply_redactions_txn(
    txn: Transaction, events_store: EventsStore, events: Iterable[Event]
) -> list[str]:
    """Apply the redactions among ``events``, and the earlier ones whose targets are among
    them; returns the targets newly flagged (the caller drops them from the event cache after
    commit)."""
    stored = list(events)
    new_redactions = [e for e in stored if _applies(e)]
    if new_redactions:
        await txn.executemany(
            "INSERT INTO redactions (event_id, redacts, room_id) VALUES (?, ?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            [(e.event_id, e.redacts, e.room_id) for e in new_redactions],
        )
    redactions = new_redactions + await _late_redactions(txn, events_store, stored)
    if not redactions:
        return []
    targets = list({e.redacts for e in redactions if e.redacts is not None})
    rows = await txn.fetchall(
        f"SELECT event_id, room_id, sender FROM events WHERE event_id IN"
        f" ({placeholders(len(targets))}) AND redacted = FALSE",
        *targets,
    )
    found = {r[0]: (r[1], r[2]) for r in rows}
    flagged: list[str] = []
    for redaction in redactions:
        target_id = redaction.redacts or ""
        target = found.get(target_id)
        if target is None or target_id in flagged:
            continue
        room_id, sender = target
        if room_id != redaction.room_id:
            continue
        if _domain(sender) != _domain(redaction.sender) and not await _may_redact_others(
            txn, events_store, redaction
        ):
            continue
        await mark_redacted_txn(txn, target_id)
        flagged.append(target_id)
    return flagged
