"""Helpers of the federation end-to-end encryption tests: keys of a local device stored
straight through the store (what /keys/upload would have stored), and key objects shaped as
clients make them (the server does not check these signatures when serving)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.app import Homeserver
from homeserver.storage.e2e_keys import Signature


def device_keys(user_id: str, device_id: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            f"curve25519:{device_id}": "curve-" + device_id,
            f"ed25519:{device_id}": "ed-" + device_id,
        },
        "signatures": {user_id: {f"ed25519:{device_id}": "self-sig-" + device_id}},
    }


def cross_signing_key(user_id: str, usage: str, public: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "usage": [usage],
        "keys": {f"ed25519:{public}": public},
    }


def one_time_key(key_id: str) -> dict[str, Any]:
    return {"key": "otk-" + key_id, "signatures": {}}


@dataclass
class SeededKeys:
    device: dict[str, Any]
    master: dict[str, Any]
    self_signing: dict[str, Any]
    user_signing: dict[str, Any]


async def seed_keys(
    hs: Homeserver, user_id: str, device_id: str, *, one_time_key_ids: tuple[str, ...] = ()
) -> SeededKeys:
    """Device keys, signed_curve25519 one-time keys and a fallback key for the device, and the
    user's three cross-signing keys ("MASTER", "SELF", "USER" as public keys)."""
    keys = SeededKeys(
        device_keys(user_id, device_id),
        cross_signing_key(user_id, "master", "MASTER"),
        cross_signing_key(user_id, "self_signing", "SELF"),
        cross_signing_key(user_id, "user_signing", "USER"),
    )
    now = hs.clock()
    store = hs.store.e2e_keys
    async with hs.store.db.transaction("test_seed_keys") as txn:
        await store.set_device_keys_txn(txn, user_id, device_id, keys.device, now)
        await store.add_one_time_keys_txn(
            txn,
            user_id,
            device_id,
            [("signed_curve25519", k, json.dumps(one_time_key(k))) for k in one_time_key_ids],
            now,
        )
        await store.set_fallback_key_txn(
            txn, user_id, device_id, "signed_curve25519", "FALLBACK", json.dumps(one_time_key("FB"))
        )
        for key_type, key in (
            ("master", keys.master),
            ("self_signing", keys.self_signing),
            ("user_signing", keys.user_signing),
        ):
            await store.set_cross_signing_key_txn(txn, user_id, key_type, key, 1)
    return keys


async def add_signatures(hs: Homeserver, *signatures: Signature) -> None:
    async with hs.store.db.transaction("test_add_signatures") as txn:
        await hs.store.e2e_keys.add_signatures_txn(txn, list(signatures))
