"""End-to-end keys of our users, served to other servers (spec: server-server API "End-to-End
Encryption" and "Device Management"): ``POST user/keys/query``, ``POST user/keys/claim`` and
``GET user/devices/{userId}``.

Only our own users are answered; a request naming anyone else is refused with 400 as a whole,
as Synapse does (a server asking us about another server's users is confused or probing).
Device display names are not shared: Synapse's ``allow_device_name_lookup_over_federation``
defaults to false, because a device name often says more about its owner than they meant to.
Signatures the key's owner uploaded later (``/keys/signatures/upload``, e.g. the self-signing
key's signature of a device) are merged into the keys, so the other server's clients can
verify the devices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.errors import BadRequest, Codes
from homeserver.storage import Store
from homeserver.types import domain_of, user_id_error

#: The cross-signing keys other servers may see (the user-signing key stays with its owner).
SHARED_CROSS_SIGNING_TYPES = {"master": "master_keys", "self_signing": "self_signing_keys"}


def cross_signing_public_key(key: Mapping[str, Any]) -> str | None:
    """The public key of a cross-signing key (its ``keys`` holds exactly one
    ``"ed25519:<public>": "<public>"``), under which signatures of it are stored."""
    keys = key.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        return None
    (public,) = keys.values()
    return public if isinstance(public, str) else None


def merge_signatures(
    key: dict[str, Any], owner: str, extra: Mapping[str, Mapping[str, str]]
) -> None:
    """Add the owner's uploaded signatures to ``key`` (in place); others' signatures of it (a
    user-signing key's) are for their signer's eyes only."""
    mine = extra.get(owner)
    if not mine:
        return
    signatures = key.get("signatures")
    merged = dict(signatures) if isinstance(signatures, dict) else {}
    own = merged.get(owner)
    merged[owner] = {**(own if isinstance(own, dict) else {}), **mine}
    key["signatures"] = merged


def _check_no_nul(values: list[str]) -> None:
    # PostgreSQL cannot even look up a text holding NUL: refuse it on both engines alike.
    if any("\x00" in value for value in values):
        raise BadRequest("Device IDs and algorithms must not contain NUL", Codes.INVALID_PARAM)


class E2EQueries:
    """The answers to the three federation endpoints, for our users."""

    def __init__(self, *, store: Store, server_name: str) -> None:
        self.store = store
        self.server_name = server_name

    async def query_keys(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``user/keys/query``: ``{device_keys: {user: [device, …]}}`` (an empty list = all
        devices) → device keys and the master and self-signing keys of those users."""
        wanted = body.get("device_keys")
        if not isinstance(wanted, dict):
            raise BadRequest("'device_keys' must be an object", Codes.BAD_JSON)
        query: dict[str, list[str]] = {}
        for user_id, device_ids in wanted.items():
            self._check_local_user(user_id)
            if device_ids is None:
                device_ids = []
            if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
                raise BadRequest(f"Devices of {user_id} must be a list of strings", Codes.BAD_JSON)
            _check_no_nul(device_ids)
            query[user_id] = device_ids
        found = await self.store.e2e_keys.get_device_keys(query)
        device_keys: dict[str, dict[str, Any]] = {user_id: {} for user_id in query}
        for user_id, devices in found.items():
            for device_id, device in devices.items():
                device_keys.setdefault(user_id, {})[device_id] = dict(device.keys)
        await self._merge_device_signatures(device_keys)
        answer: dict[str, Any] = {"device_keys": device_keys}
        answer.update(await self._shared_cross_signing_keys(list(query)))
        return answer

    async def claim_keys(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``user/keys/claim``: ``{one_time_keys: {user: {device: algorithm}}}`` → one key per
        device: its oldest one-time key of that algorithm, else its fallback key."""
        wanted = body.get("one_time_keys")
        if not isinstance(wanted, dict):
            raise BadRequest("'one_time_keys' must be an object", Codes.BAD_JSON)
        query: dict[str, dict[str, str]] = {}
        for user_id, devices in wanted.items():
            self._check_local_user(user_id)
            if not isinstance(devices, dict) or not all(
                isinstance(algorithm, str) for algorithm in devices.values()
            ):
                raise BadRequest(
                    f"Devices of {user_id} must map device IDs to algorithms", Codes.BAD_JSON
                )
            _check_no_nul([*devices, *devices.values()])
            if devices:
                query[user_id] = dict(devices)
        claimed = await self.store.e2e_keys.claim_one_time_keys(query) if query else {}
        return {"one_time_keys": claimed}

    async def user_devices(self, user_id: str) -> dict[str, Any]:
        """``user/devices/{userId}``: every device of the user (with its keys when it uploaded
        some), the user's position in the device-list stream (the ``prev_id`` the next
        ``m.device_list_update`` will carry) and their master and self-signing keys."""
        self._check_local_user(user_id)
        # The position first: a change landing between the two reads is then announced again
        # by its own EDU (whose prev_id is this position or later), never lost.
        stream_id = await self.store.device_lists.get_user_position(user_id)
        devices = await self.store.users.get_devices(user_id)
        found = (await self.store.e2e_keys.get_device_keys({user_id: []})).get(user_id, {})
        keys_by_device = {device_id: dict(device.keys) for device_id, device in found.items()}
        await self._merge_device_signatures({user_id: keys_by_device})
        entries: list[dict[str, Any]] = []
        for device in devices:
            entry: dict[str, Any] = {"device_id": device.device_id}
            if device.device_id in keys_by_device:
                entry["keys"] = keys_by_device[device.device_id]
            entries.append(entry)
        answer: dict[str, Any] = {"user_id": user_id, "stream_id": stream_id, "devices": entries}
        cross_signing = await self._shared_cross_signing_keys([user_id])
        if user_id in cross_signing["master_keys"]:
            answer["master_key"] = cross_signing["master_keys"][user_id]
        if user_id in cross_signing["self_signing_keys"]:
            answer["self_signing_key"] = cross_signing["self_signing_keys"][user_id]
        return answer

    # --- helpers ------------------------------------------------------------------------------
    def _check_local_user(self, user_id: Any) -> None:
        if not isinstance(user_id, str) or user_id_error(user_id, historical=True):
            raise BadRequest("Invalid user ID", Codes.INVALID_PARAM)
        if domain_of(user_id) != self.server_name:
            raise BadRequest("User is not hosted on this homeserver", Codes.INVALID_PARAM)

    async def _merge_device_signatures(self, device_keys: dict[str, dict[str, Any]]) -> None:
        targets = [(u, d) for u, devices in device_keys.items() for d in devices]
        if not targets:
            return
        signatures = await self.store.e2e_keys.get_signatures(targets)
        for (user_id, device_id), extra in signatures.items():
            keys = device_keys.get(user_id, {}).get(device_id)
            if keys is not None:
                merge_signatures(keys, user_id, extra)

    async def _shared_cross_signing_keys(self, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        """``{"master_keys": {user: key}, "self_signing_keys": {user: key}}`` with the owners'
        uploaded signatures merged in."""
        answer: dict[str, dict[str, Any]] = {
            field: {} for field in SHARED_CROSS_SIGNING_TYPES.values()
        }
        if not user_ids:
            return answer
        stored = await self.store.e2e_keys.get_cross_signing_keys(user_ids)
        targets: dict[tuple[str, str], dict[str, Any]] = {}
        for user_id, by_type in stored.items():
            for key_type, field in SHARED_CROSS_SIGNING_TYPES.items():
                if key_type not in by_type:
                    continue
                key = dict(by_type[key_type])
                answer[field][user_id] = key
                public = cross_signing_public_key(key)
                if public is not None:
                    targets[(user_id, public)] = key
        if targets:
            signatures = await self.store.e2e_keys.get_signatures(list(targets))
            for (user_id, public), extra in signatures.items():
                if (user_id, public) in targets:
                    merge_signatures(targets[(user_id, public)], user_id, extra)
        return answer
