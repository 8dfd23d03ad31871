"""Redactions applied at persistence, whichever path stored them (a client's, or one received
over federation): the ``redactions`` row and the target's ``redacted`` flag, so a redacted
message is served pruned and a redacted edit or thread reply drops out of the relations.

Only where any server may apply it without weighing power: the target is stored, in the
redaction's room, and was sent from the redaction sender's own server (the spec's rule for room
versions 3 and later; a redaction by a moderator of another server is applied by the local
send path, which checks power, and otherwise left for now). Accepted, not soft-failed redactions
only.
"""

from __future__ import annotations

from collections.abc import Iterable

from homeserver.events.event import Event
from homeserver.storage.database import Transaction, placeholders


def _domain(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


async def apply_redactions_txn(txn: Transaction, events: Iterable[Event]) -> list[str]:
    """Apply the redactions among ``events``; returns the targets newly flagged (the caller
    drops them from the event cache after commit)."""
    redactions = [
        e
        for e in events
        if e.type == "m.room.redaction"
        and e.redacts is not None
        and e.internal.rejected_reason is None
        and not e.internal.soft_failed
        and not e.internal.outlier
    ]
    if not redactions:
        return []
    await txn.executemany(
        "INSERT INTO redactions (event_id, redacts, room_id) VALUES (?, ?, ?)"
        " ON CONFLICT (event_id) DO NOTHING",
        [(e.event_id, e.redacts, e.room_id) for e in redactions],
    )
    targets = list({e.redacts for e in redactions if e.redacts is not None})
    rows = await txn.fetchall(
        f"SELECT event_id, room_id, sender FROM events WHERE event_id IN"
        f" ({placeholders(len(targets))}) AND redacted = FALSE",
        *targets,
    )
    found = {r[0]: (r[1], r[2]) for r in rows}
    flagged: list[str] = []
    for redaction in redactions:
        target = found.get(redaction.redacts or "")
        if target is None or redaction.redacts in flagged:
            continue
        room_id, sender = target
        if room_id == redaction.room_id and _domain(sender) == _domain(redaction.sender):
            await txn.execute(
                "UPDATE events SET redacted = TRUE WHERE event_id = ? AND redacted = FALSE",
                redaction.redacts,
            )
            flagged.append(redaction.redacts or "")
    return flagged
