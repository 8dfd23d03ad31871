"""The devices a to-device message may be delivered to: those that exist, read in the
transaction that queues the message, so a message never waits for a device already gone."""

from __future__ import annotations

from collections.abc import Collection

from homeserver.storage.database import Transaction, placeholders

_CHUNK = 500


async def get_devices_of_users_txn(
    txn: Transaction, user_ids: Collection[str]
) -> dict[str, set[str]]:
    """user_id → its device IDs; users without a device are absent."""
    devices: dict[str, set[str]] = {}
    ids = sorted(set(user_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = await txn.fetchall(
            f"SELECT user_id, device_id FROM devices WHERE user_id IN ({placeholders(len(chunk))})",
            *chunk,
        )
        for user_id, device_id in rows:
            devices.setdefault(user_id, set()).add(device_id)
    return devices
