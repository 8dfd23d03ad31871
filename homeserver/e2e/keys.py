"""The client-server key endpoints' service: /keys/upload, /keys/query, /keys/claim and
/keys/changes; ``cross_signing`` (homeserver.e2e.cross_signing) and ``signatures``
(homeserver.e2e.signature_uploads) serve /keys/device_signing/upload and
/keys/signatures/upload.

The server only stores and hands out public keys; every change that other devices must learn
about (new or changed device keys, cross-signing keys, signatures) is recorded on the
device-list stream and announced to the servers sharing a room, in the transaction that makes
it (homeserver.streams.device_changes). Keys of other servers' users are asked of those servers
through ``remote`` (homeserver.federation.remote_keys), one request per server, concurrently; a
server that does not answer is reported in ``failures`` and the rest of the answer stands.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from homeserver.accounts.reauth import Reauthenticator
from homeserver.clock import WallClock
from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.e2e.context import KeysContext
from homeserver.e2e.cross_signing import CrossSigningKeys
from homeserver.e2e.device_list_summary import changed_and_left
from homeserver.e2e.key_validation import (
    UploadedKey,
    parse_key_upload,
    same_one_time_key,
)
from homeserver.e2e.remote_requests import RemoteKeyRequests, RemoteKeysApi
from homeserver.e2e.signature_uploads import KeySignatures
from homeserver.errors import BadRequest, Codes
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.streams.device_changes import record_device_change_txn, with_signatures
from homeserver.streams.notifier import Notifier
from homeserver.streams.tokens import StreamToken
from homeserver.types import domain_of

logger = logging.getLogger(__name__)

#: A device holds at most this many one-time keys per algorithm (Synapse's limit): a client
#: that keeps uploading regardless is told, rather than filling the table.
MAX_ONE_TIME_KEYS_PER_DEVICE = 500
#: The one-time key algorithm whose count clients expect in every answer, even at 0.
SIGNED_CURVE25519 = "signed_curve25519"


class _DeviceLocks:
    """One upload at a time per device in this process (the database lock in the upload's
    transaction does it across processes; waiting here first saves a pool connection)."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class E2EKeysService:
    def __init__(
        self,
        store: Store,
        *,
        server_name: str,
        clock: WallClock,
        notifier: Notifier,
        reauth: Reauthenticator,
        remote: RemoteKeysApi | None = None,
    ) -> None:
        self._ctx = KeysContext(store, server_name, clock, notifier)
        self.remote_requests = RemoteKeyRequests(remote)
        self._upload_locks = _DeviceLocks()
        self.cross_signing = CrossSigningKeys(self._ctx, reauth)
        self.signatures = KeySignatures(self._ctx, self.remote_requests)

    # --- /keys/upload ---------------------------------------------------------------------
    async def upload(
        self, user_id: str, device_id: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        if device_id is None:
            raise BadRequest(
                "To upload keys, you must pass device_id when authenticating", Codes.UNKNOWN
            )
        async with self._upload_locks.hold((user_id, device_id)):
            changed = await self._ctx.store.db.run_in_transaction(
                "upload_keys", self._upload_txn, user_id, device_id, body
            )
        if changed:
            self._ctx.notifier.notify(user_ids=[user_id])
        return {"one_time_key_counts": await self.one_time_key_counts(user_id, device_id)}

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        counts = await self._ctx.store.e2e_keys.count_one_time_keys(user_id, device_id)
        return {SIGNED_CURVE25519: 0, **counts}

    async def _upload_txn(
        self, txn: Transaction, user_id: str, device_id: str, body: dict[str, Any]
    ) -> bool:
        """Check the upload against the stored device keys and store what it adds; True when
        the device keys changed (announced). Under the device's advisory lock (PostgreSQL,
        until commit), so two processes' uploads of one device run one after the other and
        cannot both find a one-time key missing."""
        db = self._ctx.store.db
        await txn.advisory_lock(db.lock_key("key_upload", f"{user_id}\0{device_id}"))
        old = await self._ctx.store.e2e_keys.get_device_keys_txn(txn, user_id, device_id)
        upload = parse_key_upload(body, user_id, device_id, old)
        keys_changed = False
        new_keys = upload.device_keys
        if new_keys is not None and (
            old is None or canonical_json_text(old) != canonical_json_text(new_keys)
        ):
            # A changed identity key replaces the old one (as Synapse does); the change is
            # announced so other devices fetch the keys again and notice.
            await self._ctx.store.e2e_keys.set_device_keys_txn(
                txn, user_id, device_id, new_keys, self._ctx.clock()
            )
            keys_changed = True
        await self._add_one_time_keys_txn(txn, user_id, device_id, upload.one_time_keys)
        for key in upload.fallback_keys:
            await self._ctx.store.e2e_keys.set_fallback_key_txn(
                txn, user_id, device_id, key.algorithm, key.key_id, canonical_json_text(key.key)
            )
        if keys_changed:
            await record_device_change_txn(
                txn,
                self._ctx.store,
                user_id,
                [device_id],
                our_server=self._ctx.server_name,
                now=self._ctx.clock(),
            )
        return keys_changed

    async def _add_one_time_keys_txn(
        self, txn: Transaction, user_id: str, device_id: str, keys: list[UploadedKey]
    ) -> None:
        if not keys:
            return
        existing = await self._ctx.store.e2e_keys.get_one_time_keys_txn(
            txn, user_id, device_id, [(k.algorithm, k.key_id) for k in keys]
        )
        new: dict[tuple[str, str], UploadedKey] = {}
        for key in keys:
            stored = existing.get((key.algorithm, key.key_id))
            if stored is None:
                new[(key.algorithm, key.key_id)] = key
            elif not same_one_time_key(parse_json(stored), key.key):
                raise BadRequest(
                    f"One time key {key.algorithm}:{key.key_id} already exists with other content",
                    Codes.INVALID_PARAM,
                )
        counts = await self._ctx.store.e2e_keys.count_one_time_keys_txn(txn, user_id, device_id)
        for algorithm in {a for a, _ in new}:
            adding = sum(1 for a, _ in new if a == algorithm)
            if counts.get(algorithm, 0) + adding > MAX_ONE_TIME_KEYS_PER_DEVICE:
                raise BadRequest(
                    f"A device may hold at most {MAX_ONE_TIME_KEYS_PER_DEVICE} {algorithm}"
                    " one-time keys",
                    Codes.TOO_LARGE,
                )
        await self._ctx.store.e2e_keys.add_one_time_keys_txn(
            txn,
            user_id,
            device_id,
            [(k.algorithm, k.key_id, canonical_json_text(k.key)) for k in new.values()],
            self._ctx.clock(),
        )

    # --- /keys/query ----------------------------------------------------------------------
    async def query(
        self, requester: str, query: Mapping[str, list[str]], timeout_ms: int
    ) -> dict[str, Any]:
        local = {u: d for u, d in query.items() if self._ctx.is_mine(u)}
        remote_by_server: dict[str, dict[str, list[str]]] = {}
        for user_id, device_ids in query.items():
            if not self._ctx.is_mine(user_id):
                remote_by_server.setdefault(domain_of(user_id), {})[user_id] = device_ids
        result: dict[str, Any] = {
            "device_keys": await self._local_device_keys(local),
            "failures": {},
            "master_keys": {},
            "self_signing_keys": {},
            "user_signing_keys": {},
        }
        # Cross-signing keys we hold (local users; remote users' as their servers sent them),
        # then what the remote servers answer now.
        for user_id, keys in (await self._ctx.store.e2e_keys.get_cross_signing_keys(query)).items():
            for key_type in ("master", "self_signing"):
                if key_type in keys:
                    result[f"{key_type}_keys"][user_id] = keys[key_type]
            if user_id == requester and "user_signing" in keys:
                result["user_signing_keys"][user_id] = keys["user_signing"]
        answers = await self.remote_requests.ask_servers(
            remote_by_server,
            lambda remote, server, asked: remote.query(server, asked, timeout_ms / 1000),
            result["failures"],
        )
        for server, answer in answers.items():
            for field in ("device_keys", "master_keys", "self_signing_keys"):
                if isinstance(answer.get(field), dict):
                    result[field].update(answer[field])
            if isinstance(answer.get("failure"), dict):  # part answered from cached lists
                result["failures"][server] = answer["failure"]
        await self._merge_cross_signing_signatures(requester, result)
        return result

    async def _local_device_keys(self, query: Mapping[str, list[str]]) -> dict[str, dict[str, Any]]:
        found = await self._ctx.store.e2e_keys.get_device_keys(query) if query else {}
        signatures = await self._ctx.store.e2e_keys.get_signatures(
            [(u, d) for u, devices in found.items() for d in devices]
        )
        answer: dict[str, dict[str, Any]] = {}
        for user_id in query:
            devices = answer[user_id] = {}
            for device_id, stored in found.get(user_id, {}).items():
                keys = with_signatures(stored.keys, signatures.get((user_id, device_id)))
                if stored.display_name is not None:
                    keys["unsigned"] = {"device_display_name": stored.display_name}
                devices[device_id] = keys
        return answer

    async def _merge_cross_signing_signatures(self, requester: str, result: dict[str, Any]) -> None:
        """Signatures uploaded for cross-signing keys: on a master key, its owner's (made by
        its devices) and the requester's own (by their user-signing key); other users'
        verdicts on someone are theirs alone."""
        targets: dict[tuple[str, str], tuple[str, str]] = {}
        for field in ("master_keys", "self_signing_keys", "user_signing_keys"):
            for user_id, key in result[field].items():
                keys = key.get("keys") if isinstance(key, dict) else None
                for public_key in keys.values() if isinstance(keys, dict) else ():
                    if isinstance(public_key, str):
                        targets[(user_id, public_key)] = (field, user_id)
        if not targets:
            return
        signatures = await self._ctx.store.e2e_keys.get_signatures(targets)
        for target, by_signer in signatures.items():
            field, user_id = targets[target]
            visible = {s: k for s, k in by_signer.items() if s in (user_id, requester)}
            result[field][user_id] = with_signatures(result[field][user_id], visible)

    # --- /keys/claim ----------------------------------------------------------------------
    async def claim(
        self, query: Mapping[str, Mapping[str, str]], timeout_ms: int
    ) -> dict[str, Any]:
        local = {u: d for u, d in query.items() if self._ctx.is_mine(u)}
        remote_by_server: dict[str, dict[str, Mapping[str, str]]] = {}
        for user_id, devices in query.items():
            if not self._ctx.is_mine(user_id):
                remote_by_server.setdefault(domain_of(user_id), {})[user_id] = devices
        claimed: dict[str, Any] = (
            await self._ctx.store.e2e_keys.claim_one_time_keys(local) if local else {}
        )
        failures: dict[str, Any] = {}
        answers = await self.remote_requests.ask_servers(
            remote_by_server,
            lambda remote, server, asked: remote.claim(server, asked, timeout_ms / 1000),
            failures,
        )
        for answer in answers.values():
            claimed.update(answer)
        return {"one_time_keys": claimed, "failures": failures}

    # --- /keys/changes --------------------------------------------------------------------
    async def changes(
        self, user_id: str, since: StreamToken, upto: StreamToken | None
    ) -> dict[str, list[str]]:
        if upto is None:
            upto = StreamToken(
                events=await self._ctx.store.events.get_max_stream_ordering(),
                device_lists=await self._ctx.store.device_lists.get_position(),
            )
        changed, left = await changed_and_left(self._ctx.store, user_id, since, upto)
        return {"changed": sorted(changed), "left": sorted(left)}
