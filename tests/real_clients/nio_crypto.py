"""Real end-to-end encryption with matrix-nio (its ``e2e`` extra: vodozemac's Olm and Megolm) for
tests against our homeserver and against Synapse.

An :class:`EncryptedUser` is one logged-in nio device with a crypto store in a directory of the
test. Its :meth:`~EncryptedUser.sync` does what nio's ``sync_forever`` does after every sync
(upload one-time keys the server says are missing, query changed device lists, claim keys for
wedged sessions, send queued to-device messages) and records what the timeline held: messages
nio decrypted, messages that arrived in plaintext, and Megolm events nio could not decrypt — so
a failure says which of the three went wrong.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    KeysUploadResponse,
    LoginResponse,
    MegolmEvent,
    RoomCreateResponse,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
)

from tests.federation.interop_peer import OurServer, running_our_server
from tests.http_client import CS, Client, q

MEGOLM = "m.megolm.v1.aes-sha2"
#: Our server creates every room encrypted (the test's rooms ask for no encryption themselves).
ENCRYPTION_BY_POLICY: dict[str, Any] = {"encryption_enabled_by_default_for_room_type": "all"}
#: Long-polls short enough that a waiting loop notices the deadline promptly.
SYNC_TIMEOUT_MS = 1000


@asynccontextmanager
async def our_server_encrypting_by_policy(directory: Path, engine: str) -> AsyncIterator[OurServer]:
    """Our homeserver as a real process on ``engine``, encrypting every new room by policy."""
    async with running_our_server(directory, engine, ENCRYPTION_BY_POLICY) as server:
        yield server


@dataclass
class EncryptedUser:
    """One nio device with encryption, and what its syncs have shown."""

    client: AsyncClient
    #: room id → bodies of m.room.message events nio decrypted, in arrival order
    decrypted: dict[str, list[str]] = field(default_factory=dict)
    #: (room id, body) of m.room.message events that were NOT encrypted
    plaintext: list[tuple[str, str]] = field(default_factory=list)
    #: Megolm events nio could not decrypt
    undecryptable: list[MegolmEvent] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    @property
    def device_id(self) -> str:
        return str(self.client.device_id)

    @classmethod
    async def login(
        cls, base_url: str, user_id: str, password: str, store_dir: Path, device_name: str
    ) -> EncryptedUser:
        """Log in a new device and upload its device keys and one-time keys."""
        store_dir.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        client = AsyncClient(base_url, user_id, store_path=str(store_dir), config=config)
        try:
            response = await client.login(password, device_name=device_name)
            assert isinstance(response, LoginResponse), response
            assert client.olm is not None, "nio's encryption is not enabled (e2e extra missing?)"
            if client.should_upload_keys:
                uploaded = await client.keys_upload()
                assert isinstance(uploaded, KeysUploadResponse), uploaded
        except BaseException:
            await client.close()
            raise
        return cls(client)

    async def close(self) -> None:
        await self.client.close()

    async def sync(self, *, upload_keys: bool = True) -> SyncResponse:
        response = await self.client.sync(timeout=SYNC_TIMEOUT_MS)
        assert isinstance(response, SyncResponse), response
        for room_id, room in response.rooms.join.items():
            for event in room.timeline.events:
                if isinstance(event, MegolmEvent):
                    self.undecryptable.append(event)
                elif isinstance(event, RoomMessageText):
                    if event.decrypted:
                        self.decrypted.setdefault(room_id, []).append(event.body)
                    else:
                        self.plaintext.append((room_id, event.body))
        await self._after_sync(upload_keys)
        return response

    async def _after_sync(self, upload_keys: bool) -> None:
        """What nio's sync_forever does between syncs (its order)."""
        client = self.client
        await client.send_to_device_messages()
        if upload_keys and client.should_upload_keys:
            uploaded = await client.keys_upload()
            assert isinstance(uploaded, KeysUploadResponse), uploaded
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())

    async def sync_until(
        self,
        ready: Callable[[], bool],
        what: str,
        timeout: float,
        *,
        upload_keys: bool = True,
    ) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.user_id} ({self.device_id}) never saw {what}; {self}")
            await self.sync(upload_keys=upload_keys)

    async def wait_decrypted(self, room_id: str, body: str, timeout: float) -> None:
        await self.sync_until(
            lambda: body in self.decrypted.get(room_id, []),
            f"{body!r} decrypted in {room_id}",
            timeout,
        )
        assert not self.plaintext, self.plaintext

    async def wait_joined(self, room_id: str, member: str, timeout: float) -> None:
        """Until nio's picture of ``room_id`` has ``member`` joined (and the room encrypted)."""

        def joined() -> bool:
            room = self.client.rooms.get(room_id)
            return (
                room is not None
                and member in room.users
                and member not in room.invited_users
                and room.encrypted
            )

        await self.sync_until(joined, f"{member} joined in encrypted {room_id}", timeout)

    def known_devices(self, user_id: str) -> set[str]:
        """The device ids of ``user_id`` in nio's device store (what /keys/query returned)."""
        return {device.id for device in self.client.device_store.active_user_devices(user_id)}

    async def wait_device_known(self, user_id: str, device_id: str, timeout: float) -> None:
        """Until a /sync's device_lists.changed made nio query ``user_id`` again and the answer
        had ``device_id``."""
        await self.sync_until(
            lambda: device_id in self.known_devices(user_id),
            f"{user_id}'s new device {device_id}",
            timeout,
        )

    async def send_encrypted(self, room_id: str, body: str) -> str:
        room = self.client.rooms[room_id]
        assert room.encrypted, f"nio does not think {room_id} is encrypted: it would send plaintext"
        response = await self.client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body},
            ignore_unverified_devices=True,
        )
        assert isinstance(response, RoomSendResponse), response
        return str(response.event_id)

    def __str__(self) -> str:
        failed = [event.session_id for event in self.undecryptable]
        return (
            f"decrypted={self.decrypted} plaintext={self.plaintext} "
            f"undecryptable (Megolm session ids)={failed}"
        )


async def create_room_by_policy(alice: EncryptedUser, invite: list[str], name: str) -> str:
    """A private room whose request says nothing about encryption."""
    created = await alice.client.room_create(
        preset=RoomPreset.private_chat, name=name, invite=invite
    )
    assert isinstance(created, RoomCreateResponse), created
    return str(created.room_id)


async def accept_invite(bob: EncryptedUser, room_id: str, timeout: float) -> None:
    await bob.sync_until(
        lambda: room_id in bob.client.invited_rooms, f"the invite to {room_id}", timeout
    )
    joined = await bob.client.join(room_id)
    assert isinstance(joined, JoinResponse), joined


async def exchange_encrypted(
    first: EncryptedUser, second: EncryptedUser, room_id: str, tag: str, timeout: float
) -> tuple[str, str]:
    """``first`` → ``second`` and back, each decrypted by the receiver; the two bodies."""
    there = f"{tag}: secret from {first.user_id}"
    back = f"{tag}: secret reply from {second.user_id}"
    await first.send_encrypted(room_id, there)
    await second.wait_decrypted(room_id, there, timeout)
    await second.send_encrypted(room_id, back)
    await first.wait_decrypted(room_id, back, timeout)
    return there, back


async def raw_get(
    session: aiohttp.ClientSession, base_url: str, path: str, token: str
) -> tuple[int, str]:
    async with session.get(
        base_url + path, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, await response.text()


async def room_encryption_state(
    session: aiohttp.ClientSession, base_url: str, token: str, room_id: str
) -> dict[str, Any]:
    status, text = await raw_get(
        session, base_url, f"{CS}/rooms/{q(room_id)}/state/m.room.encryption", token
    )
    assert status == 200, (status, text)
    return dict(json.loads(text))


async def assert_server_saw_only_ciphertext(
    session: aiohttp.ClientSession,
    base_url: str,
    token: str,
    room_id: str,
    senders: set[str],
    secrets: list[str],
) -> None:
    """The room's history as the server serves it (plain /messages): what the users sent is
    m.room.encrypted with Megolm ciphertext, and none of the plaintext bodies is anywhere."""
    status, text = await raw_get(
        session, base_url, f"{CS}/rooms/{q(room_id)}/messages?dir=b&limit=100", token
    )
    assert status == 200, (status, text)
    for secret in secrets:
        assert secret not in text, f"the server holds the plaintext {secret!r}"
    sent = [
        event
        for event in json.loads(text)["chunk"]
        if event["sender"] in senders and "state_key" not in event
    ]
    assert len(sent) >= len(secrets), sent
    for event in sent:
        assert event["type"] == "m.room.encrypted", event
        assert event["content"]["algorithm"] == MEGOLM, event
        assert event["content"]["ciphertext"], event


async def upload_fallback_key(
    session: aiohttp.ClientSession, base_url: str, user: EncryptedUser
) -> str:
    """Give ``user``'s device a signed fallback key (nio 0.26 never uploads one itself): the
    private half is generated inside nio's own vodozemac account, so an Olm session a peer
    starts on it is one nio can accept. The public key (base64); its key id may equal a one-time
    key's (vodozemac counts the two kinds separately)."""
    olm = user.client.olm
    assert olm is not None
    account = olm.account._account  # nio wraps a vodozemac.Account
    account.generate_fallback_key()
    ((key_id, public_key),) = account.fallback_key.items()
    key: dict[str, Any] = {"key": public_key.to_base64(), "fallback": True}
    signature = olm.account.sign(canonical_json(key))
    key["signatures"] = {user.user_id: {f"ed25519:{user.device_id}": signature}}
    algorithm_key_id = f"signed_curve25519:{key_id}"
    body = {"fallback_keys": {algorithm_key_id: key}}
    await Client(session, base_url).ok("POST", "/keys/upload", user.client.access_token, body)
    return str(key["key"])


async def claim_key(
    session: aiohttp.ClientSession, base_url: str, token: str, user_id: str, device_id: str
) -> tuple[str, dict[str, Any]] | None:
    """One POST /keys/claim for ``device_id``'s signed_curve25519 key: (key id, key) or None."""
    body = {"one_time_keys": {user_id: {device_id: "signed_curve25519"}}}
    answer = await Client(session, base_url).ok("POST", "/keys/claim", token, body)
    keys = answer["one_time_keys"].get(user_id, {}).get(device_id, {})
    if not keys:
        return None
    ((key_id, key),) = keys.items()
    return key_id, key


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
