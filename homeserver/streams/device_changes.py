"""Recording that a local user's devices or cross-signing keys changed, inside the transaction
that changes them: a position on the device_lists stream (what /sync and /keys/changes report)
and the EDUs that tell the other servers sharing a room with the user, queued in the federation
outbox in that same transaction, so a change is announced exactly when it is committed.

Each device gets a position of its own and its own ``m.device_list_update``; ``prev_id`` names
the user's previous position, which lets the receiving server notice a missed update and
resync. Callers wake the notifier after the commit.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from homeserver.storage import Store
from homeserver.storage.database import Transaction

DEVICE_LIST_UPDATE = "m.device_list_update"
SIGNING_KEY_UPDATE = "m.signing_key_update"

#: The device ID of a device_lists row recording a change of the cross-signing keys.
CROSS_SIGNING_DEVICE = ""


def edu_payload(edu_type: str, content: dict[str, Any]) -> dict[str, Any]:
    """An outbox entry holding an EDU (the federation sender batches them)."""
    return {"kind": "edu", "edu_type": edu_type, "content": content}


def with_signatures(
    key: Mapping[str, Any], extra: Mapping[str, Mapping[str, str]] | None
) -> dict[str, Any]:
    """A copy of ``key`` with signatures stored beside it (uploaded later through
    /keys/signatures/upload) merged into its own."""
    merged = dict(key)
    if not extra:
        return merged
    # A remote server's key may carry junk where its signatures belong: keep what is sound.
    own = key.get("signatures")
    signatures = {
        u: dict(s) for u, s in (own.items() if isinstance(own, dict) else ()) if isinstance(s, dict)
    }
    for signer, by_key in extra.items():
        signatures.setdefault(signer, {}).update(by_key)
    merged["signatures"] = signatures
    return merged


async def record_device_change_txn(
    txn: Transaction,
    store: Store,
    user_id: str,
    device_ids: Collection[str],
    *,
    our_server: str,
    deleted: bool = False,
    now: int,
) -> int:
    """Record a change of these devices of local ``user_id`` and queue an
    ``m.device_list_update`` per device for every other server sharing a room with the user.
    Returns the newest stream position (0 when ``device_ids`` is empty)."""
    position = 0
    servers = await store.device_lists.get_remote_servers_sharing_a_room_txn(
        txn, user_id, our_server
    )
    for device_id in sorted(set(device_ids)):
        position = await store.device_lists.add_change_txn(txn, user_id, [device_id])
        if not servers:
            continue
        prev = await store.device_lists.get_user_last_position_txn(txn, user_id, position)
        content: dict[str, Any] = {
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": position,
            "prev_id": [] if prev is None else [prev],
        }
        if deleted:
            content["deleted"] = True
        else:
            # No device_display_name: a device name often says more about its owner than they
            # meant to share (Synapse's allow_device_name_lookup_over_federation defaults to
            # false, and user/devices leaves it out too).
            keys = await store.e2e_keys.get_device_keys_txn(txn, user_id, device_id)
            if keys is not None:
                signatures = await store.e2e_keys.get_signatures_txn(txn, user_id, [device_id])
                content["keys"] = with_signatures(keys, signatures.get(device_id))
        await store.outbox.enqueue_many_txn(
            txn, [(s, edu_payload(DEVICE_LIST_UPDATE, content)) for s in sorted(servers)], now=now
        )
    return position


async def record_cross_signing_change_txn(
    txn: Transaction,
    store: Store,
    user_id: str,
    *,
    our_server: str,
    now: int,
    federate: bool = True,
) -> int:
    """Record a change of local ``user_id``'s cross-signing keys (or of the signatures on its
    master key) and, with ``federate``, queue ``m.signing_key_update`` (master and
    self-signing keys: a user-signing key is never shown to other users) for every other
    server sharing a room with the user. Returns the stream position."""
    position = await store.device_lists.add_change_txn(txn, user_id, [CROSS_SIGNING_DEVICE])
    if federate:
        await queue_signing_key_update_txn(txn, store, user_id, our_server=our_server, now=now)
    return position


async def queue_signing_key_update_txn(
    txn: Transaction, store: Store, user_id: str, *, our_server: str, now: int
) -> None:
    """Queue ``m.signing_key_update`` with local ``user_id``'s master and self-signing keys as
    they stand in ``txn`` for every other server sharing a room with the user."""
    servers = await store.device_lists.get_remote_servers_sharing_a_room_txn(
        txn, user_id, our_server
    )
    if not servers:
        return
    keys = await store.e2e_keys.get_cross_signing_keys_txn(txn, user_id)
    content: dict[str, Any] = {"user_id": user_id}
    for key_type, field in (("master", "master_key"), ("self_signing", "self_signing_key")):
        key = keys.get(key_type)
        if key is None:
            continue
        public_keys = list((key.get("keys") or {}).values())
        signatures = await store.e2e_keys.get_signatures_txn(txn, user_id, public_keys)
        # Only the user's own signatures (by its devices) travel; other users' user-signing
        # signatures are for those users alone.
        own = {
            signer: by_key
            for target in public_keys
            for signer, by_key in signatures.get(target, {}).items()
            if signer == user_id
        }
        content[field] = with_signatures(key, own)
    if len(content) > 1:
        await store.outbox.enqueue_many_txn(
            txn, [(s, edu_payload(SIGNING_KEY_UPDATE, content)) for s in sorted(servers)], now=now
        )
