"""Which servers receive a local event, queued in the federation outbox in the event's own
transaction (DESIGN.md §4: nothing is lost if we crash or a peer is down).

A PDU goes to every other server with a member joined to the room after the event, plus — for a
membership event — the target's server: servers joined *before* the event are those joined
after it plus, at most, the server of a member this event removed, so a leave, kick or ban still
reaches the leaver's server. An invite of a remote user is also delivered to the invitee's
server by ``v2/invite`` (the spec requires the invitee's server to see and sign every invite,
whether or not it is in the room); that server gets the PDU through ``/send`` only if it already
has a member joined.

Cost: one statement per batch (the joined servers); a room of local members gets no rows from
it and queues nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from homeserver.events.event import Event
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.types import domain_of


def pdu_entry(event: Event) -> dict[str, Any]:
    return {"kind": "pdu", "event_id": event.event_id}


def invite_entry(event: Event) -> dict[str, Any]:
    """The payload createRoom and upgrades already write for remote invitees."""
    return {
        "kind": "invite",
        "room_id": event.room_id,
        "event_id": event.event_id,
        "room_version": event.room_version.identifier,
    }


def remote_invitee_server(event: Event, our_server: str) -> str | None:
    """The invitee's server if ``event`` invites a user of another server."""
    if event.membership != "invite" or not event.state_key or ":" not in event.state_key:
        return None
    server = domain_of(event.state_key)
    return None if server == our_server else server


def destinations_for(
    event: Event, joined_servers: Collection[str], *, our_server: str, exclude: Collection[str] = ()
) -> tuple[list[str], str | None]:
    """The rule, without I/O: ``(servers that get the PDU, server that gets a v2/invite)``.

    ``joined_servers`` are the servers with a member joined after the event."""
    pdu_servers = set(joined_servers)
    invitee_server = remote_invitee_server(event, our_server)
    if event.membership is not None and invitee_server is None:
        target = event.state_key or ""
        if ":" in target:
            pdu_servers.add(domain_of(target))
    pdu_servers.discard(our_server)
    pdu_servers.difference_update(exclude)
    if invitee_server in exclude:
        invitee_server = None
    return sorted(pdu_servers), invitee_server


async def enqueue_events_txn(
    txn: Transaction,
    store: Store,
    events: Sequence[Event],
    *,
    our_server: str,
    exclude: Collection[str] = (),
) -> list[str]:
    """Queue ``events`` (one room, in order) for every server that should get them; returns the
    destinations. The joined servers are read once, after the whole batch: a server that
    joined inside the batch also gets its earlier events, which does no harm."""
    if not events:
        return []
    joined = await store.outbox.joined_servers_txn(txn, events[0].room_id, our_server)
    entries: list[tuple[str, dict[str, Any]]] = []
    for event in events:
        pdu_servers, invitee_server = destinations_for(
            event, joined, our_server=our_server, exclude=exclude
        )
        # The invite first: the invitee's server signs the invite before it sees the PDU.
        if invitee_server is not None:
            entries.append((invitee_server, invite_entry(event)))
        entries.extend((server, pdu_entry(event)) for server in pdu_servers)
    if entries:
        await store.outbox.enqueue_many_txn(txn, entries, now=_queued_at(events))
    return sorted({destination for destination, _ in entries})


async def enqueue_remote_invites_txn(
    txn: Transaction, store: Store, events: Sequence[Event], *, our_server: str
) -> None:
    """Queue a ``v2/invite`` for each invite of a remote user among ``events`` of a room no
    other server is in yet (a new room's genesis, an upgrade's replacement room): one statement
    for all of them, none when every invitee is local."""
    entries = [
        (server, invite_entry(event))
        for event in events
        if (server := remote_invitee_server(event, our_server)) is not None
    ]
    if entries:
        await store.outbox.enqueue_many_txn(txn, entries, now=_queued_at(events))


async def enqueue_event_txn(
    txn: Transaction,
    store: Store,
    event: Event,
    *,
    our_server: str,
    exclude: Collection[str] = (),
) -> list[str]:
    """Queue one event for every other server in its room (see the module docstring)."""
    return await enqueue_events_txn(txn, store, [event], our_server=our_server, exclude=exclude)


def _queued_at(events: Iterable[Event]) -> int:
    return max(event.origin_server_ts for event in events)
