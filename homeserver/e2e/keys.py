"""The client-server key endpoints' service: /keys/upload, /keys/query, /keys/claim,
/keys/changes, /keys/device_signing/upload and /keys/signatures/upload.

The server only stores and hands out public keys; every change that other devices must learn
about (new or changed device keys, cross-signing keys, signatures) is recorded on the
device-list stream and announced to the servers sharing a room, in the transaction that makes
it (homeserver.e2e.device_changes). Keys of other servers' users are asked of those servers
through ``remote`` (homeserver.federation.remote_keys), one request per server, concurrently; a
server that does not answer is reported in ``failures`` and the rest of the answer stands.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from homeserver.accounts.reauth import Reauthenticator
from homeserver.clock import WallClock
from homeserver.crypto.canonical_json import canonical_json_text, parse_json
from homeserver.e2e.device_changes import (
    CROSS_SIGNING_DEVICE,
    queue_signing_key_update_txn,
    record_cross_signing_change_txn,
    record_device_change_txn,
    with_signatures,
)
from homeserver.e2e.device_list_summary import changed_and_left
from homeserver.e2e.key_validation import (
    CROSS_SIGNING_TYPES,
    InvalidSignature,
    KeyUpload,
    UploadedKey,
    check_signed_by,
    cross_signing_public_key,
    new_signature,
    parse_cross_signing_key,
    parse_key_upload,
    parse_signatures_upload,
    same_one_time_key,
)
from homeserver.errors import BadRequest, Codes, MatrixError, NotFound
from homeserver.federation.client import FederationError
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.e2e_keys import Signature
from homeserver.sync.notifier import Notifier
from homeserver.sync.tokens import StreamToken
from homeserver.types import domain_of

logger = logging.getLogger(__name__)

#: A device holds at most this many one-time keys per algorithm (Synapse's limit): a client
#: that keeps uploading regardless is told, rather than filling the table.
MAX_ONE_TIME_KEYS_PER_DEVICE = 500
#: The one-time key algorithm whose count clients expect in every answer, even at 0.
SIGNED_CURVE25519 = "signed_curve25519"
#: UIA operation name of replacing cross-signing keys.
DEVICE_SIGNING_OPERATION = "device_signing_upload"

_CROSS_SIGNING_FIELDS = {
    "master": "master_key",
    "self_signing": "self_signing_key",
    "user_signing": "user_signing_key",
}

T = TypeVar("T")


class RemoteKeysApi(Protocol):
    """What /keys/query and /keys/claim need of other servers (``hs.remote_keys``)."""

    async def query(
        self, server: str, device_keys: Mapping[str, Collection[str]], timeout_s: float
    ) -> dict[str, Any]: ...

    async def claim(
        self, server: str, one_time_keys: Mapping[str, Mapping[str, str]], timeout_s: float
    ) -> dict[str, Any]: ...


def failure_json(error: Exception) -> dict[str, Any]:
    """A ``failures`` entry: a Matrix error as it is, a federation failure with its reason,
    anything else (our own fault) without details, which stay in the log."""
    if isinstance(error, MatrixError):
        return {"status": error.status, "errcode": error.errcode, "message": error.message}
    if isinstance(error, TimeoutError):
        return {"status": 503, "message": "Timed out"}
    if isinstance(error, FederationError):
        return {"status": 503, "message": str(error) or type(error).__name__}
    return {"status": 503, "message": "Internal error"}


class _DeviceLocks:
    """One upload at a time per device, so that two uploads of the same one-time key cannot
    both find it missing and both insert it."""

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
        remote: Callable[[], RemoteKeysApi | None] = lambda: None,
    ) -> None:
        self._store = store
        self._server_name = server_name
        self._clock = clock
        self._notifier = notifier
        self._reauth = reauth
        # Resolved at each use: the federation side may be built after this service.
        self._remote = remote
        self._upload_locks = _DeviceLocks()

    def _is_mine(self, user_id: str) -> bool:
        return domain_of(user_id) == self._server_name

    # --- /keys/upload ---------------------------------------------------------------------
    async def upload(
        self, user_id: str, device_id: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        if device_id is None:
            raise BadRequest(
                "To upload keys, you must pass device_id when authenticating", Codes.UNKNOWN
            )
        async with self._upload_locks.hold((user_id, device_id)):
            stored = await self._store.e2e_keys.get_device_keys({user_id: [device_id]})
            device = stored.get(user_id, {}).get(device_id)
            upload = parse_key_upload(body, user_id, device_id, device.keys if device else None)
            changed = await self._store.db.run_in_transaction(
                "upload_keys", self._upload_txn, user_id, device_id, upload
            )
        if changed:
            self._notifier.notify(user_ids=[user_id])
        return {"one_time_key_counts": await self.one_time_key_counts(user_id, device_id)}

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        counts = await self._store.e2e_keys.count_one_time_keys(user_id, device_id)
        return {SIGNED_CURVE25519: 0, **counts}

    async def _upload_txn(
        self, txn: Transaction, user_id: str, device_id: str, upload: KeyUpload
    ) -> bool:
        """Store what the upload adds; True when the device keys changed (announced)."""
        keys_changed = False
        if upload.device_keys is not None:
            old = await self._store.e2e_keys.get_device_keys_txn(txn, user_id, device_id)
            if old is None or canonical_json_text(old) != canonical_json_text(upload.device_keys):
                # A changed identity key replaces the old one (as Synapse does); the change is
                # announced so other devices fetch the keys again and notice.
                await self._store.e2e_keys.set_device_keys_txn(
                    txn, user_id, device_id, upload.device_keys, self._clock()
                )
                keys_changed = True
        await self._add_one_time_keys_txn(txn, user_id, device_id, upload.one_time_keys)
        for key in upload.fallback_keys:
            await self._store.e2e_keys.set_fallback_key_txn(
                txn, user_id, device_id, key.algorithm, key.key_id, canonical_json_text(key.key)
            )
        if keys_changed:
            await record_device_change_txn(
                txn,
                self._store,
                user_id,
                [device_id],
                our_server=self._server_name,
                now=self._clock(),
            )
        return keys_changed

    async def _add_one_time_keys_txn(
        self, txn: Transaction, user_id: str, device_id: str, keys: list[UploadedKey]
    ) -> None:
        if not keys:
            return
        existing = await self._store.e2e_keys.get_one_time_keys_txn(
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
        counts = await self._store.e2e_keys.count_one_time_keys_txn(txn, user_id, device_id)
        for algorithm in {a for a, _ in new}:
            adding = sum(1 for a, _ in new if a == algorithm)
            if counts.get(algorithm, 0) + adding > MAX_ONE_TIME_KEYS_PER_DEVICE:
                raise BadRequest(
                    f"A device may hold at most {MAX_ONE_TIME_KEYS_PER_DEVICE} {algorithm}"
                    " one-time keys",
                    Codes.TOO_LARGE,
                )
        await self._store.e2e_keys.add_one_time_keys_txn(
            txn,
            user_id,
            device_id,
            [(k.algorithm, k.key_id, canonical_json_text(k.key)) for k in new.values()],
            self._clock(),
        )

    # --- /keys/query ----------------------------------------------------------------------
    async def query(
        self, requester: str, query: Mapping[str, list[str]], timeout_ms: int
    ) -> dict[str, Any]:
        local = {u: d for u, d in query.items() if self._is_mine(u)}
        remote_by_server: dict[str, dict[str, list[str]]] = {}
        for user_id, device_ids in query.items():
            if not self._is_mine(user_id):
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
        for user_id, keys in (await self._store.e2e_keys.get_cross_signing_keys(query)).items():
            for key_type in ("master", "self_signing"):
                if key_type in keys:
                    result[f"{key_type}_keys"][user_id] = keys[key_type]
            if user_id == requester and "user_signing" in keys:
                result["user_signing_keys"][user_id] = keys["user_signing"]
        answers = await self._ask_servers(
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
        found = await self._store.e2e_keys.get_device_keys(query) if query else {}
        signatures = await self._store.e2e_keys.get_signatures(
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
        signatures = await self._store.e2e_keys.get_signatures(targets)
        for target, by_signer in signatures.items():
            field, user_id = targets[target]
            visible = {s: k for s, k in by_signer.items() if s in (user_id, requester)}
            result[field][user_id] = with_signatures(result[field][user_id], visible)

    async def _ask_servers(
        self,
        by_server: Mapping[str, T],
        ask: Callable[[RemoteKeysApi, str, T], Awaitable[dict[str, Any]]],
        failures: dict[str, Any],
    ) -> dict[str, dict[str, Any]]:
        """Ask every server concurrently; a failure (or no federation at all) goes to
        ``failures`` under the server's name."""
        if not by_server:
            return {}
        remote = self._remote()
        if remote is None:
            for server in by_server:
                failures[server] = {"status": 503, "message": "Federation is not available"}
            return {}
        servers = sorted(by_server)
        outcomes = await asyncio.gather(
            *(ask(remote, server, by_server[server]) for server in servers),
            return_exceptions=True,
        )
        answers: dict[str, dict[str, Any]] = {}
        for server, outcome in zip(servers, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # cancellation and the like are not a server's failure
                if isinstance(outcome, FederationError | TimeoutError):
                    logger.info("key request to %s failed: %s", server, outcome)
                else:
                    logger.error("key request to %s failed", server, exc_info=outcome)
                failures[server] = failure_json(outcome)
            elif isinstance(outcome, dict):
                answers[server] = outcome
        return answers

    # --- /keys/claim ----------------------------------------------------------------------
    async def claim(
        self, query: Mapping[str, Mapping[str, str]], timeout_ms: int
    ) -> dict[str, Any]:
        local = {u: d for u, d in query.items() if self._is_mine(u)}
        remote_by_server: dict[str, dict[str, Mapping[str, str]]] = {}
        for user_id, devices in query.items():
            if not self._is_mine(user_id):
                remote_by_server.setdefault(domain_of(user_id), {})[user_id] = devices
        claimed: dict[str, Any] = (
            await self._store.e2e_keys.claim_one_time_keys(local) if local else {}
        )
        failures: dict[str, Any] = {}
        answers = await self._ask_servers(
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
                events=await self._store.events.get_max_stream_ordering(),
                device_lists=await self._store.device_lists.get_position(),
            )
        changed, left = await changed_and_left(self._store, user_id, since, upto)
        return {"changed": sorted(changed), "left": sorted(left)}

    # --- /keys/device_signing/upload ------------------------------------------------------
    async def upload_cross_signing_keys(self, user_id: str, body: dict[str, Any]) -> None:
        stored = (await self._store.e2e_keys.get_cross_signing_keys([user_id])).get(user_id, {})
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
        if "master" in stored:
            # Replacing keys that exist needs the password; the first upload does not
            # (spec v1.11, MSC3967), so a new account can set up cross-signing at once.
            await self._reauth.require_password(DEVICE_SIGNING_OPERATION, body.get("auth"), user_id)
        await self._store.db.run_in_transaction(
            "upload_cross_signing_keys", self._store_cross_signing_txn, user_id, checked
        )
        self._notifier.notify(user_ids=[user_id])

    async def _store_cross_signing_txn(
        self, txn: Transaction, user_id: str, keys: Mapping[str, dict[str, Any]]
    ) -> None:
        position = await self._store.device_lists.add_change_txn(
            txn, user_id, [CROSS_SIGNING_DEVICE]
        )
        for key_type in CROSS_SIGNING_TYPES:
            if key_type in keys:
                await self._store.e2e_keys.set_cross_signing_key_txn(
                    txn, user_id, key_type, keys[key_type], position
                )
        if "master" in keys or "self_signing" in keys:
            await queue_signing_key_update_txn(
                txn, self._store, user_id, our_server=self._server_name, now=self._clock()
            )

    # --- /keys/signatures/upload ----------------------------------------------------------
    async def upload_signatures(self, user_id: str, body: Any) -> dict[str, Any]:
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
            await self._store.db.run_in_transaction(
                "upload_signatures",
                self._store_signatures_txn,
                user_id,
                signatures,
                own_devices,
                own_master,
                signed_users,
            )
            self._notifier.notify(user_ids=[user_id, *signed_users])
        return {"failures": failures}

    async def _own_signatures(
        self,
        user_id: str,
        objects: Mapping[str, dict[str, Any]],
        failures: dict[str, dict[str, Any]],
    ) -> tuple[list[Signature], list[str], bool]:
        """Signatures of the user's devices by their self-signing key, and of their master key
        by their devices: (signatures, devices signed, whether the master key was)."""
        cross = (await self._store.e2e_keys.get_cross_signing_keys([user_id])).get(user_id, {})
        devices = (await self._store.e2e_keys.get_device_keys({user_id: []})).get(user_id, {})
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
        own = (await self._store.e2e_keys.get_cross_signing_keys([user_id])).get(user_id, {})
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
        held = await self._store.e2e_keys.get_cross_signing_keys(user_ids)
        masters = {u: keys["master"] for u, keys in held.items() if "master" in keys}
        missing: dict[str, dict[str, list[str]]] = {}
        for u in user_ids:
            if u not in masters and not self._is_mine(u):
                missing.setdefault(domain_of(u), {})[u] = []
        answers = await self._ask_servers(
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
        await self._store.e2e_keys.add_signatures_txn(txn, signatures)
        now = self._clock()
        if own_devices:
            await record_device_change_txn(
                txn, self._store, user_id, own_devices, our_server=self._server_name, now=now
            )
        if own_master:
            await record_cross_signing_change_txn(
                txn, self._store, user_id, our_server=self._server_name, now=now
            )
        # The uploader's clients learn of their verdict on others by a change of those users
        # (a signature by a user-signing key never leaves this server).
        for target in signed_users:
            await self._store.device_lists.add_change_txn(txn, target, [CROSS_SIGNING_DEVICE])
