"""``POST /keys/signatures/upload``: signatures a user makes with their cross-signing keys and
devices — their own devices by their self-signing key, their master key by a device, other
users' master keys by their user-signing key. Each signature is checked against the key that
made it; those that fail are answered in ``failures`` and the rest are stored, merged into the
signed key whenever it is queried, and announced as a device-list change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.e2e.context import KeysContext
from homeserver.e2e.key_validation import (
    InvalidSignature,
    check_signed_by,
    cross_signing_public_key,
    new_signature,
    parse_signatures_upload,
)
from homeserver.e2e.remote_requests import RemoteKeyRequests, failure_json
from homeserver.errors import MatrixError, NotFound
from homeserver.storage.database import Transaction
from homeserver.storage.e2e_keys import Signature
from homeserver.streams.device_changes import (
    CROSS_SIGNING_DEVICE,
    record_cross_signing_change_txn,
    record_device_change_txn,
)
from homeserver.types import domain_of


class KeySignatures:
    def __init__(self, ctx: KeysContext, remote: RemoteKeyRequests) -> None:
        self._ctx = ctx
        self._remote = remote

    async def upload(self, user_id: str, body: Any) -> dict[str, Any]:
        uploads = parse_signatures_upload(body)
        failures: dict[str, dict[str, Any]] = {}
        signatures: list[Signature] = []
        own_devices: list[str] = []
        own_master = False
        if user_id in uploads:
            found, own_devices, own_master = await self._own_signatures(
                user_id, uploads[user_id], failures
            )
            signatures.extend(found)
        others = {u: objects for u, objects in uploads.items() if u != user_id}
        signed_users: list[str] = []
        if others:
            found = await self._other_users_signatures(user_id, others, failures)
            signatures.extend(found)
            signed_users = sorted({s.target_user_id for s in found})
        if signatures:
            await self._ctx.store.db.run_in_transaction(
                "upload_signatures",
                self._store_signatures_txn,
                user_id,
                signatures,
                own_devices,
                own_master,
                signed_users,
            )
            self._ctx.notifier.notify(user_ids=[user_id, *signed_users])
        return {"failures": failures}

    async def _own_signatures(
        self,
        user_id: str,
        objects: Mapping[str, dict[str, Any]],
        failures: dict[str, dict[str, Any]],
    ) -> tuple[list[Signature], list[str], bool]:
        """Signatures of the user's devices by their self-signing key, and of their master key
        by their devices: (signatures, devices signed, whether the master key was)."""
        cross = (await self._ctx.store.e2e_keys.get_cross_signing_keys([user_id])).get(user_id, {})
        devices = (await self._ctx.store.e2e_keys.get_device_keys({user_id: []})).get(user_id, {})
        master = cross.get("master")
        master_public = cross_signing_public_key(master)[1] if master else None
        signatures: list[Signature] = []
        signed_devices: list[str] = []
        master_signed = False
        for key_id, signed in objects.items():
            try:
                if key_id == master_public and master is not None:
                    found = self._master_signed_by_devices(user_id, signed, master, devices)
                    master_signed = master_signed or bool(found)
                else:
                    found = self._device_signed_by_self_signing_key(
                        user_id, key_id, signed, cross.get("self_signing"), devices
                    )
                    if found:
                        signed_devices.append(key_id)
                signatures.extend(found)
            except MatrixError as e:
                failures.setdefault(user_id, {})[key_id] = failure_json(e)
        return signatures, signed_devices, master_signed

    def _master_signed_by_devices(
        self,
        user_id: str,
        signed: dict[str, Any],
        master: dict[str, Any],
        devices: Mapping[str, Any],
    ) -> list[Signature]:
        master_key_id, master_public = cross_signing_public_key(master)
        signatures = signed.get("signatures")
        by_user = signatures.get(user_id) if isinstance(signatures, dict) else None
        if not isinstance(by_user, dict) or not by_user:
            raise InvalidSignature("No signature on the master key")
        already = (master.get("signatures") or {}).get(user_id, {})
        found: list[Signature] = []
        for signer_key_id, signature in by_user.items():
            if signer_key_id == master_key_id or already.get(signer_key_id) == signature:
                continue  # signatures it already carries
            algorithm, _, device_id = signer_key_id.partition(":")
            if algorithm != "ed25519":
                continue  # nothing we can check
            device = devices.get(device_id)
            public = (device.keys.get("keys") or {}).get(signer_key_id) if device else None
            if not isinstance(public, str):
                raise InvalidSignature("Signed by an unknown device")
            new_signature(signed, master, user_id, signer_key_id)
            check_signed_by(signed, user_id, signer_key_id, public, "the master key")
            found.append(Signature(user_id, signer_key_id, user_id, master_public, signature))
        return found

    def _device_signed_by_self_signing_key(
        self,
        user_id: str,
        device_id: str,
        signed: dict[str, Any],
        self_signing: dict[str, Any] | None,
        devices: Mapping[str, Any],
    ) -> list[Signature]:
        if self_signing is None:
            raise NotFound("No self-signing key")
        ssk_key_id, ssk_public = cross_signing_public_key(self_signing)
        device = devices.get(device_id)
        if device is None:
            raise NotFound("Unknown device")
        signature = new_signature(signed, device.keys, user_id, ssk_key_id)
        check_signed_by(signed, user_id, ssk_key_id, ssk_public, f"device {device_id}")
        return [Signature(user_id, ssk_key_id, user_id, device_id, signature)]

    async def _other_users_signatures(
        self,
        user_id: str,
        uploads: Mapping[str, Mapping[str, dict[str, Any]]],
        failures: dict[str, dict[str, Any]],
    ) -> list[Signature]:
        """Other users' master keys signed by the uploader's user-signing key."""
        own = (await self._ctx.store.e2e_keys.get_cross_signing_keys([user_id])).get(user_id, {})
        user_signing = own.get("user_signing")
        if user_signing is None:
            failure = failure_json(NotFound("No user-signing key"))
            for target, objects in uploads.items():
                failures[target] = dict.fromkeys(objects, failure)
            return []
        usk_key_id, usk_public = cross_signing_public_key(user_signing)
        masters = await self._masters_of(list(uploads))
        signatures: list[Signature] = []
        for target, objects in uploads.items():
            master = masters.get(target)
            try:
                master_public = cross_signing_public_key(master)[1] if master else None
            except MatrixError:
                master_public = None
            for key_id, signed in objects.items():
                try:
                    if master is None or key_id != master_public:
                        raise NotFound("Unknown master key")
                    signature = new_signature(signed, master, user_id, usk_key_id)
                    check_signed_by(signed, user_id, usk_key_id, usk_public, f"{target}'s key")
                    signatures.append(Signature(user_id, usk_key_id, target, key_id, signature))
                except MatrixError as e:
                    failures.setdefault(target, {})[key_id] = failure_json(e)
        return signatures

    async def _masters_of(self, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Master keys we hold, and for remote users we hold none of, their server's."""
        held = await self._ctx.store.e2e_keys.get_cross_signing_keys(user_ids)
        masters = {u: keys["master"] for u, keys in held.items() if "master" in keys}
        missing: dict[str, dict[str, list[str]]] = {}
        for u in user_ids:
            if u not in masters and not self._ctx.is_mine(u):
                missing.setdefault(domain_of(u), {})[u] = []
        answers = await self._remote.ask_servers(
            missing, lambda remote, server, asked: remote.query(server, asked, 10.0), {}
        )
        for answer in answers.values():
            for u, key in (answer.get("master_keys") or {}).items():
                masters.setdefault(u, key)
        return masters

    async def _store_signatures_txn(
        self,
        txn: Transaction,
        user_id: str,
        signatures: list[Signature],
        own_devices: list[str],
        own_master: bool,
        signed_users: list[str],
    ) -> None:
        await self._ctx.store.e2e_keys.add_signatures_txn(txn, signatures)
        # Two users verifying each other at once would otherwise each lock their own device
        # list first and then wait for the other's.
        changed_users = {*signed_users, *([user_id] if own_devices or own_master else [])}
        await self._ctx.store.device_lists.lock_users_txn(txn, changed_users)
        now = self._ctx.clock()
        if own_devices:
            await record_device_change_txn(
                txn,
                self._ctx.store,
                user_id,
                own_devices,
                our_server=self._ctx.server_name,
                now=now,
            )
        if own_master:
            await record_cross_signing_change_txn(
                txn, self._ctx.store, user_id, our_server=self._ctx.server_name, now=now
            )
        # The uploader's clients learn of their verdict on others by a change of those users
        # (a signature by a user-signing key never leaves this server).
        for target in signed_users:
            await self._ctx.store.device_lists.add_change_txn(txn, target, [CROSS_SIGNING_DEVICE])
