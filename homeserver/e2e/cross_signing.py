"""``POST /keys/device_signing/upload``: a user's cross-signing keys (master, self-signing,
user-signing). The first upload needs no password (spec v1.11, MSC3967: a new account can set up
cross-signing at once); replacing keys that exist does, through user-interactive auth. Each key
is checked (owner, usage, the master key's signature on the other two) before anything is
stored, and the change is announced on the device-list stream and to servers sharing a room."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.accounts.reauth import Reauthenticator
from homeserver.e2e.context import KeysContext
from homeserver.e2e.key_validation import CROSS_SIGNING_TYPES, parse_cross_signing_key
from homeserver.errors import BadRequest, Codes
from homeserver.storage.database import Transaction
from homeserver.streams.device_changes import CROSS_SIGNING_DEVICE, queue_signing_key_update_txn

#: UIA operation name of replacing cross-signing keys.
DEVICE_SIGNING_OPERATION = "device_signing_upload"

_CROSS_SIGNING_FIELDS = {
    "master": "master_key",
    "self_signing": "self_signing_key",
    "user_signing": "user_signing_key",
}


class CrossSigningKeys:
    def __init__(self, ctx: KeysContext, reauth: Reauthenticator) -> None:
        self._ctx = ctx
        self._reauth = reauth

    async def upload(self, user_id: str, body: dict[str, Any]) -> None:
        stored = (await self._ctx.store.e2e_keys.get_cross_signing_keys([user_id])).get(user_id, {})
        uploaded = {t: body[f] for t, f in _CROSS_SIGNING_FIELDS.items() if f in body}
        if all(stored.get(t) == key for t, key in uploaded.items()):
            # The same keys again (a retried request) change nothing and need no password.
            return
        master = (
            parse_cross_signing_key(uploaded["master"], user_id, "master")
            if "master" in uploaded
            else stored.get("master")
        )
        if master is None:
            raise BadRequest("No master key available", Codes.MISSING_PARAM)
        checked = {"master": master} if "master" in uploaded else {}
        for key_type in ("self_signing", "user_signing"):
            if key_type in uploaded:
                checked[key_type] = parse_cross_signing_key(
                    uploaded[key_type], user_id, key_type, master
                )
        if "master" in stored and not await self._replaceable_without_uia(user_id):
            # Replacing keys that exist needs the password; the first upload does not
            # (spec v1.11, MSC3967), so a new account can set up cross-signing at once; nor
            # does a replacement an admin allowed for a while (Synapse's
            # _allow_cross_signing_replacement_without_uia).
            await self._reauth.require_password(DEVICE_SIGNING_OPERATION, body.get("auth"), user_id)
        await self._ctx.store.db.run_in_transaction(
            "upload_cross_signing_keys", self._store_cross_signing_txn, user_id, checked
        )
        self._ctx.notifier.notify(user_ids=[user_id])

    async def _replaceable_without_uia(self, user_id: str) -> bool:
        before = await self._ctx.store.admin_user_data.cross_signing_replaceable_before(user_id)
        return before is not None and self._ctx.clock() < before

    async def _store_cross_signing_txn(
        self, txn: Transaction, user_id: str, keys: Mapping[str, dict[str, Any]]
    ) -> None:
        position = await self._ctx.store.device_lists.add_change_txn(
            txn, user_id, [CROSS_SIGNING_DEVICE]
        )
        for key_type in CROSS_SIGNING_TYPES:
            if key_type in keys:
                await self._ctx.store.e2e_keys.set_cross_signing_key_txn(
                    txn, user_id, key_type, keys[key_type], position
                )
        if "master" in keys or "self_signing" in keys:
            await queue_signing_key_update_txn(
                txn,
                self._ctx.store,
                user_id,
                our_server=self._ctx.server_name,
                now=self._ctx.clock(),
            )
