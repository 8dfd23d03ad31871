"""Key material and a minimal client for the ``e2e`` suite, the same for any homeserver.

:class:`DeviceKeys` holds one device's Olm account (vodozemac, the library matrix-nio uses) and
builds the upload bodies a real client sends: device keys signed by the device's ed25519 key,
and ``signed_curve25519`` one-time keys each signed the same way — servers check both
signatures, so fabricated keys would measure the rejection path instead.

:class:`E2EClient` is one registered user's device: raw JSON requests that fail loudly (a
benchmark that silently times errors reports nonsense) and the ``/sync`` loops the to-device
measurements need.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import vodozemac
from canonicaljson import encode_canonical_json

from tests.federation.cs_client import register_with_shared_secret

CS = "/_matrix/client/v3"
OLM = "m.olm.v1.curve25519-aes-sha2"
MEGOLM = "m.megolm.v1.aes-sha2"
SIGNED_CURVE25519 = "signed_curve25519"
#: Only to-device messages matter to these syncs; no presence (Synapse's is disabled anyway).
SYNC_FILTER = '{"presence":{"types":[]},"account_data":{"types":[]}}'
#: The content key that tells the benchmark's to-device messages apart.
MARK = "org.example.bench.seq"
#: Bytes of fake Olm ciphertext per to-device message: about what an encrypted m.room_key
#: (a Megolm session shared with one device) weighs once base64-encoded.
CIPHERTEXT_BYTES = 600


class BenchRequestError(RuntimeError):
    """A request the benchmark needs answered 200 was not."""


class DeviceKeys:
    """One device's Olm identity and the key uploads a client makes for it."""

    def __init__(self, user_id: str, device_id: str) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.account = vodozemac.Account()

    @property
    def curve25519(self) -> str:
        return str(self.account.curve25519_key.to_base64())

    def _sign(self, unsigned: dict[str, Any]) -> dict[str, Any]:
        signature = self.account.sign(encode_canonical_json(unsigned)).to_base64()
        key_id = f"ed25519:{self.device_id}"
        return {**unsigned, "signatures": {self.user_id: {key_id: signature}}}

    def device_keys(self) -> dict[str, Any]:
        return self._sign(
            {
                "user_id": self.user_id,
                "device_id": self.device_id,
                "algorithms": [OLM, MEGOLM],
                "keys": {
                    f"curve25519:{self.device_id}": self.curve25519,
                    f"ed25519:{self.device_id}": self.account.ed25519_key.to_base64(),
                },
            }
        )

    def one_time_keys(self, count: int) -> dict[str, Any]:
        """``count`` new signed one-time keys, marked published (vodozemac keeps at most
        ``max_number_of_one_time_keys`` unpublished, so bigger batches are made in chunks)."""
        keys: dict[str, Any] = {}
        while len(keys) < count:
            chunk = min(count - len(keys), self.account.max_number_of_one_time_keys)
            self.account.generate_one_time_keys(chunk)
            for key_id, key in self.account.one_time_keys.items():
                keys[f"{SIGNED_CURVE25519}:{key_id}"] = self._sign({"key": key.to_base64()})
            self.account.mark_keys_as_published()
        return keys

    def upload_body(self, one_time_keys: int, *, with_device_keys: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"one_time_keys": self.one_time_keys(one_time_keys)}
        if with_device_keys:
            body["device_keys"] = self.device_keys()
        return body


def encrypted_content(sender_key: str, recipient_key: str, seq: int) -> dict[str, Any]:
    """An m.room.encrypted to-device content shaped like an Olm message (random ciphertext:
    the server never decrypts it)."""
    body = base64.b64encode(os.urandom(CIPHERTEXT_BYTES)).decode().rstrip("=")
    return {
        "algorithm": OLM,
        "sender_key": sender_key,
        "ciphertext": {recipient_key: {"type": 1, "body": body}},
        MARK: seq,
    }


class E2EClient:
    """One user with one device on one server."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        user_id: str,
        access_token: str,
        device_id: str,
    ) -> None:
        self.session = session
        self.base_url = base_url
        self.user_id = user_id
        self.access_token = access_token
        self.device_id = device_id
        self.keys = DeviceKeys(user_id, device_id)
        self.since: str | None = None

    @classmethod
    async def register(
        cls, session: aiohttp.ClientSession, base_url: str, secret: str, localpart: str
    ) -> E2EClient:
        user_id, token = await register_with_shared_secret(session, base_url, secret, localpart)
        client = cls(session, base_url, user_id, token, "")
        whoami = await client.request("GET", "/account/whoami")
        client.device_id = whoami["device_id"]
        client.keys = DeviceKeys(user_id, client.device_id)
        return client

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Sequence[tuple[str, str]] = (),
        timeout: float = 120,
    ) -> Any:
        async with self.session.request(
            method,
            self.base_url + CS + path,
            json=body,
            params=list(params),
            headers={"Authorization": f"Bearer {self.access_token}"},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            data = await response.json(content_type=None)
            if response.status != 200:
                raise BenchRequestError(f"{method} {path} -> {response.status} {data}"[:1000])
            return data

    async def upload_keys(self, body: dict[str, Any]) -> dict[str, int]:
        answer = await self.request("POST", "/keys/upload", body)
        return dict(answer.get("one_time_key_counts", {}))

    async def send_to_device(
        self, event_type: str, txn_id: str, messages: dict[str, dict[str, Any]]
    ) -> None:
        path = f"/sendToDevice/{quote(event_type, safe='')}/{quote(txn_id, safe='')}"
        await self.request("PUT", path, {"messages": messages})

    async def sync(self, timeout_ms: int) -> list[dict[str, Any]]:
        """One /sync from the stored token (advanced); the to-device events it returned."""
        params = [("timeout", str(timeout_ms)), ("filter", SYNC_FILTER)]
        if self.since is not None:
            params.append(("since", self.since))
        answer = await self.request("GET", "/sync", None, params, timeout=timeout_ms / 1000 + 60)
        self.since = answer["next_batch"]
        return list(answer.get("to_device", {}).get("events", []))

    async def drain_to_device(self) -> int:
        """Sync until no to-device message is left; how many there were."""
        drained = 0
        while events := await self.sync(0):
            drained += len(events)
        return drained

    async def wait_for_mark(self, seq: int, deadline_s: float) -> float:
        """Long-poll /sync until the to-device message marked ``seq`` arrives; the
        ``perf_counter`` time its /sync answer was in hand."""
        give_up = time.monotonic() + deadline_s
        while True:
            events = await self.sync(timeout_ms=30_000)
            arrived = time.perf_counter()
            if any(e.get("content", {}).get(MARK) == seq for e in events):
                return arrived
            if time.monotonic() > give_up:
                raise BenchRequestError(f"to-device message {seq} never reached /sync")
            await asyncio.sleep(0)

    async def collect_marks(self, expected: int, deadline_s: float) -> set[int]:
        """Sync until ``expected`` distinct marked messages have arrived (or the deadline)."""
        seen: set[int] = set()
        give_up = time.monotonic() + deadline_s
        while len(seen) < expected and time.monotonic() < give_up:
            for event in await self.sync(timeout_ms=1000):
                mark = event.get("content", {}).get(MARK)
                if isinstance(mark, int):
                    seen.add(mark)
        return seen
