"""Recording a local user's out-of-band membership event: the event as an outlier (it has no
state on this server) plus the ``out_of_band_memberships`` row /sync reads, in the caller's
transaction."""

from __future__ import annotations

from homeserver.events.event import Event
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.out_of_band import OutOfBandMembership


async def record_out_of_band_txn(txn: Transaction, store: Store, event: Event) -> int:
    """Store ``event`` (a member event of one of our users) as an outlier and make it the
    user's out-of-band membership in its room; returns its stream position."""
    if event.membership is None or event.state_key is None:
        raise ValueError("not a membership event")
    event.internal.outlier = True
    result = await store.persist_events_txn(txn, [(event, None)])
    if result.events:
        position = result.events[0].stream_ordering
    else:  # stored before (a repeated invite): keep its position
        found = await store.out_of_band.event_position_txn(txn, event.event_id)
        if found is None:
            raise RuntimeError(f"{event.event_id} is neither new nor stored")
        position = found
    await store.out_of_band.upsert_txn(
        txn,
        OutOfBandMembership(
            user_id=event.state_key,
            room_id=event.room_id,
            event_id=event.event_id,
            membership=event.membership,
            room_version=event.room_version.identifier,
            stream_ordering=position,
        ),
    )
    return position
