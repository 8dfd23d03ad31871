"""Keys as a real client makes them: ed25519 device keys signed with signedjson, signed
one-time and fallback keys, cross-signing keys (the key ID is the public key), and calls of the
/keys endpoints."""

from __future__ import annotations

import copy
import os
from typing import Any

from nacl.signing import SigningKey
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from homeserver.crypto.base64 import encode_base64
from tests.harness import TestServer, TestUser

PASSWORD = "correct horse battery staple"
ALGORITHMS = ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]


def public_key(signing_key: SigningKey) -> str:
    return str(encode_verify_key_base64(get_verify_key(signing_key)))


def random_curve25519() -> str:
    return encode_base64(os.urandom(32))


class Device:
    """A device's ed25519 identity key and what it signs."""

    def __init__(self, user_id: str, device_id: str) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.signing_key = generate_signing_key(device_id)
        self.curve25519 = random_curve25519()

    @property
    def ed25519(self) -> str:
        return public_key(self.signing_key)

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        return sign_json(copy.deepcopy(obj), self.user_id, self.signing_key)

    def device_keys(self, **overrides: Any) -> dict[str, Any]:
        keys = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ALGORITHMS,
            "keys": {
                f"ed25519:{self.device_id}": self.ed25519,
                f"curve25519:{self.device_id}": self.curve25519,
            },
        }
        return self.sign({**keys, **overrides})

    def one_time_key(self, key_id: str, *, fallback: bool = False) -> dict[str, Any]:
        obj: dict[str, Any] = {"key": random_curve25519()}
        if fallback:
            obj["fallback"] = True
        return self.sign(obj)

    def one_time_keys(self, count: int, start: int = 0) -> dict[str, Any]:
        return {
            f"signed_curve25519:AAAA{i:04d}": self.one_time_key(f"AAAA{i:04d}")
            for i in range(start, start + count)
        }


def cross_signing_signing_key() -> SigningKey:
    """A signing key whose version is its public key, as cross-signing key IDs are."""
    key = generate_signing_key("tmp")
    key.version = public_key(key)
    return key


class CrossSigning:
    """A user's master, self-signing and user-signing keys."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.master = cross_signing_signing_key()
        self.self_signing = cross_signing_signing_key()
        self.user_signing = cross_signing_signing_key()

    def key(self, usage: str, signing_key: SigningKey) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "usage": [usage],
            "keys": {f"ed25519:{signing_key.version}": signing_key.version},
        }

    def master_key(self) -> dict[str, Any]:
        return self.key("master", self.master)

    def self_signing_key(self) -> dict[str, Any]:
        return sign_json(self.key("self_signing", self.self_signing), self.user_id, self.master)

    def user_signing_key(self) -> dict[str, Any]:
        return sign_json(self.key("user_signing", self.user_signing), self.user_id, self.master)

    def upload_body(self) -> dict[str, Any]:
        return {
            "master_key": self.master_key(),
            "self_signing_key": self.self_signing_key(),
            "user_signing_key": self.user_signing_key(),
        }


async def upload(server: TestServer, user: TestUser, body: dict[str, Any]) -> tuple[int, Any]:
    return await server.call("POST", "/keys/upload", user, json=body)


async def upload_device(server: TestServer, user: TestUser, otks: int = 0) -> Device:
    """Upload signed device keys (and ``otks`` one-time keys) for ``user``'s device."""
    device = Device(user.user_id, user.device_id)
    body: dict[str, Any] = {"device_keys": device.device_keys()}
    if otks:
        body["one_time_keys"] = device.one_time_keys(otks)
    status, answer = await upload(server, user, body)
    assert status == 200, answer
    return device


async def query(server: TestServer, user: TestUser, *user_ids: str) -> dict[str, Any]:
    status, answer = await server.call(
        "POST", "/keys/query", user, json={"device_keys": {u: [] for u in user_ids}}
    )
    assert status == 200, answer
    result: dict[str, Any] = answer
    return result


async def claim(
    server: TestServer, user: TestUser, target: TestUser, algorithm: str = "signed_curve25519"
) -> dict[str, Any]:
    status, answer = await server.call(
        "POST",
        "/keys/claim",
        user,
        json={"one_time_keys": {target.user_id: {target.device_id: algorithm}}},
    )
    assert status == 200, answer
    keys: dict[str, Any] = answer["one_time_keys"].get(target.user_id, {}).get(target.device_id, {})
    return keys


_PASSWORD_HASH: list[str] = []


async def give_password(server: TestServer, user: TestUser) -> None:
    """Set ``PASSWORD`` as ``user``'s password (hashed once per test run)."""
    if not _PASSWORD_HASH:
        from homeserver.accounts.sessions import hash_password_async

        _PASSWORD_HASH.append(await hash_password_async(PASSWORD))
    await server.hs.store.users.set_password_hash(user.user_id, _PASSWORD_HASH[0])


def password_auth(user: TestUser, session: str | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": PASSWORD,
    }
    if session is not None:
        auth["session"] = session
    return auth


async def key_rows(server: TestServer, user_id: str, device_id: str) -> dict[str, int]:
    """How many rows each key table holds for one device."""
    counts = {}
    for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys"):
        counts[table] = int(
            await server.hs.store.db.fetchval(
                f"SELECT COUNT(*) FROM {table} WHERE user_id = ? AND device_id = ?",
                user_id,
                device_id,
            )
        )
    return counts


async def outbox_edus(server: TestServer) -> list[tuple[str, str, dict[str, Any]]]:
    """(destination, edu_type, content) of every EDU queued in the federation outbox."""
    from homeserver.crypto.canonical_json import parse_json

    rows = await server.hs.store.db.fetchall(
        "SELECT destination, payload FROM federation_outbox ORDER BY id"
    )
    edus = []
    for destination, text in rows:
        payload = parse_json(text)
        if payload.get("kind") == "edu":
            edus.append((destination, payload["edu_type"], payload["content"]))
    return edus
