"""Which servers receive a local event, queued in the federation outbox in the event's own
transaction (DESIGN.md §4: nothing is lost if we crash or a peer is down).

As Synapse (``FederationSender``: the hosts joined in the state *before* the event), a PDU goes to
every other server with a member joined to the room at the event. Those are the servers joined
after it plus, at most, the target's server of a membership event that removed a joined member:
so a kick, ban or leave of a remote user still reaches that user's server, while a pre-emptive
ban of someone who never joined does not (it would hand that server an event ID of the room).
Also as Synapse, a leave of a remote user who was only invited (a rescinded invite) reaches the
invitee's server. The target's membership before the event is the one its auth events cite.

An invite of a remote user is delivered to the invitee's server by ``v2/invite`` (the spec
requires the invitee's server to see and sign every invite, whether or not it is in the room);
that server gets the PDU through ``/send`` only if it already has a member joined.

Cost: one statement per batch (the joined servers), plus one read of auth events for a batch
holding a membership change of a remote user; a room of local members queues nothing.
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


def _remote_target_server(event: Event, our_server: str) -> str | None:
    """The server of a membership event's target when it is another server's user."""
    if event.membership is None or not event.state_key or ":" not in event.state_key:
        return None
    server = domain_of(event.state_key)
    return None if server == our_server else server


def target_server_was_in(event: Event, target_before: str | None) -> bool:
    """Whether a membership event's target server must get it although it may have no member
    joined after it: the target was joined before (a kick, ban or leave), or was invited and
    someone else makes them leave (a rescinded invite, as Synapse sends it)."""
    if target_before == "join":
        return True
    return (
        target_before == "invite"
        and event.membership == "leave"
        and event.sender != event.state_key
    )


def destinations_for(
    event: Event,
    joined_servers: Collection[str],
    *,
    our_server: str,
    exclude: Collection[str] = (),
    target_before: str | None = None,
) -> tuple[list[str], str | None]:
    """The rule, without I/O: ``(servers that get the PDU, server that gets a v2/invite)``.

    ``joined_servers`` are the servers with a member joined after the event; ``target_before``
    is a membership event's target's membership before it (None: none, or not one)."""
    pdu_servers = set(joined_servers)
    invitee_server = remote_invitee_server(event, our_server)
    target_server = _remote_target_server(event, our_server)
    if target_server is not None and target_server_was_in(event, target_before):
        pdu_servers.add(target_server)
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
    before = await _targets_before_txn(txn, store, events, joined, our_server)
    entries: list[tuple[str, dict[str, Any]]] = []
    for event in events:
        pdu_servers, invitee_server = destinations_for(
            event,
            joined,
            our_server=our_server,
            exclude=exclude,
            target_before=before.get(event.event_id),
        )
        # The invite first: the invitee's server signs the invite before it sees the PDU.
        if invitee_server is not None:
            entries.append((invitee_server, invite_entry(event)))
        entries.extend((server, pdu_entry(event)) for server in pdu_servers)
    if entries:
        await store.outbox.enqueue_many_txn(txn, entries, now=_queued_at(events))
    return sorted({destination for destination, _ in entries})


async def _targets_before_txn(
    txn: Transaction,
    store: Store,
    events: Sequence[Event],
    joined: Collection[str],
    our_server: str,
) -> dict[str, str | None]:
    """For each membership event of a remote target whose server is not joined after the batch
    and who may have been in before (a leave or ban): the target's membership before the event,
    read from the target's member event among its auth events (the auth rules make every
    membership event cite it when there is one)."""
    candidates = [
        event
        for event in events
        if event.membership in ("leave", "ban")
        and (server := _remote_target_server(event, our_server)) is not None
        and server not in joined
    ]
    if not candidates:
        return {}
    auth = await store.events.get_events(
        {a for event in candidates for a in event.auth_event_ids()}, txn=txn
    )
    before: dict[str, str | None] = {}
    for event in candidates:
        before[event.event_id] = next(
            (
                auth[a].membership
                for a in event.auth_event_ids()
                if a in auth
                and auth[a].type == "m.room.member"
                and auth[a].state_key == event.state_key
            ),
            None,
        )
    return before


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
