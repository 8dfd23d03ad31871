"""Removing devices: each device goes together with its access tokens, its end-to-end keys and
its to-device inbox, and the removal is recorded on the device-list stream (and announced to
the servers sharing a room with the user), all in one transaction. Every path that removes a
device (DELETE /devices, logout, a password change, the admin API, deactivation) comes here,
so no device leaves keys behind that other users would still encrypt to.
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.clock import WallClock
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.streams.device_changes import record_device_change_txn
from homeserver.streams.notifier import Notifier


class DeviceRemoval:
    def __init__(
        self,
        store: Store,
        server_name: str,
        clock: WallClock,
        notifier: Notifier | None = None,
    ) -> None:
        self._store = store
        self._server_name = server_name
        self._clock = clock
        self._notifier = notifier

    async def delete_devices(self, user_id: str, device_ids: Sequence[str]) -> None:
        """Remove these devices of ``user_id`` (unknown ones are skipped)."""

        async def run(txn: Transaction) -> bool:
            removed = [
                device_id
                # In one order, the client-IP flush's: two removals (or a removal and a flush)
                # of the same devices then queue instead of deadlocking.
                for device_id in sorted(set(device_ids))
                if await self._store.users.delete_device_txn(txn, user_id, device_id)
            ]
            return await self._forget_keys_txn(txn, user_id, removed)

        if await self._store.db.run_in_transaction("delete_devices", run):
            self._notify(user_id)

    async def delete_all_devices(
        self, user_id: str, *, except_device_id: str | None = None
    ) -> None:
        """Remove every device of ``user_id`` but ``except_device_id``, and every access token
        without a device."""

        async def run(txn: Transaction) -> bool:
            removed = await self._store.users.delete_devices_for_user_txn(
                txn, user_id, except_device_id=except_device_id
            )
            return await self._forget_keys_txn(txn, user_id, removed)

        if await self._store.db.run_in_transaction("delete_all_devices", run):
            self._notify(user_id)

    async def _forget_keys_txn(
        self, txn: Transaction, user_id: str, device_ids: Sequence[str]
    ) -> bool:
        for device_id in device_ids:
            await self._store.e2e_keys.delete_device_keys_txn(txn, user_id, device_id)
        await record_device_change_txn(
            txn,
            self._store,
            user_id,
            device_ids,
            our_server=self._server_name,
            deleted=True,
            now=self._clock(),
        )
        return bool(device_ids)

    def _notify(self, user_id: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(user_ids=[user_id])
