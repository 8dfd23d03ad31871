"""Queueing the ephemeral EDUs (``m.typing``, ``m.receipt``, ``m.presence``) in the federation
outbox, for the other servers with a member joined to a room, or sharing a room with a user.

They go through the same durable per-destination queue as PDUs, so they are batched into
transactions beside them and a server that is down gets them when it is back (its clients
drop what is stale: a typing notice times out at the receiver).
"""

from __future__ import annotations

from typing import Any

from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.streams.device_changes import edu_payload

TYPING_EDU = "m.typing"
RECEIPT_EDU = "m.receipt"
PRESENCE_EDU = "m.presence"


async def enqueue_room_edu_txn(
    txn: Transaction,
    store: Store,
    room_id: str,
    edu_type: str,
    content: dict[str, Any],
    *,
    our_server: str,
    now: int,
) -> list[str]:
    """Queue one EDU for every other server joined to ``room_id``; returns them."""
    servers = sorted(await store.outbox.joined_servers_txn(txn, room_id, our_server))
    if servers:
        payload = edu_payload(edu_type, content)
        await store.outbox.enqueue_many_txn(txn, [(s, payload) for s in servers], now=now)
    return servers


async def enqueue_room_edu(
    store: Store,
    room_id: str,
    edu_type: str,
    content: dict[str, Any],
    *,
    our_server: str,
    now: int,
) -> list[str]:
    """:func:`enqueue_room_edu_txn` in a transaction of its own."""
    async with store.db.transaction("enqueue_room_edu") as txn:
        return await enqueue_room_edu_txn(
            txn, store, room_id, edu_type, content, our_server=our_server, now=now
        )


async def enqueue_user_edu_txn(
    txn: Transaction,
    store: Store,
    user_id: str,
    edu_type: str,
    content: dict[str, Any],
    *,
    our_server: str,
    now: int,
) -> list[str]:
    """Queue one EDU for every other server sharing a room with local ``user_id``."""
    servers = sorted(
        await store.device_lists.get_remote_servers_sharing_a_room_txn(txn, user_id, our_server)
    )
    if servers:
        payload = edu_payload(edu_type, content)
        await store.outbox.enqueue_many_txn(txn, [(s, payload) for s in servers], now=now)
    return servers
