"""Real end-to-end encryption through our homeserver (issue 7, "Done when"), on SQLite and on
PostgreSQL: matrix-nio clients with vodozemac's Olm/Megolm against a real ``homeserver run``.

* The room is encrypted by server policy (``encryption_enabled_by_default_for_room_type: all``;
  the createRoom request says nothing about encryption).
* alice → bob and back: nio queries device keys, claims one-time keys, sends the Megolm room key
  by to-device (Olm) and then m.room.encrypted; each side decrypts the other's message. The
  server's own /messages holds only Megolm ciphertext, never the plaintext.
* bob's second device had every one-time key claimed beforehand and holds only a fallback key:
  the server hands out each one-time key once, then the fallback key, and alice's Olm session to
  that device is built on it — the device decrypts alice's message all the same.
* alice upgrades the room: m.room.encryption is carried over, both are joined to the replacement
  room, and they exchange and decrypt messages there — also on a device alice logs in only
  then, which bob's client learns of through /sync device_lists.changed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.federation.cs_client import register_with_shared_secret
from tests.federation.interop_peer import OurServer
from tests.http_client import Client, q
from tests.real_clients.nio_crypto import (
    MEGOLM,
    EncryptedUser,
    accept_invite,
    assert_server_saw_only_ciphertext,
    claim_key,
    create_room_by_policy,
    exchange_encrypted,
    our_server_encrypting_by_policy,
    room_encryption_state,
    upload_fallback_key,
)

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SKIP_POSTGRES = os.environ.get("HOMESERVER_TEST_SKIP_POSTGRES") == "1"
#: Generous per-wait deadline; waits return as soon as the data is there.
WAIT = 60.0


@pytest.fixture(params=ENGINES)
async def ours(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OurServer]:
    async with our_server_encrypting_by_policy(tmp_path / "server", request.param) as server:
        yield server
    assert "Traceback" not in server.log(), server.log_tail(12000)


async def _login(
    session: aiohttp.ClientSession, ours: OurServer, tmp_path: Path, localpart: str, device: str
) -> EncryptedUser:
    user_id = f"@{localpart}:{ours.server_name}"
    return await EncryptedUser.login(
        ours.client_url,
        user_id,
        f"{localpart}-password-0123456789",
        tmp_path / "stores" / device,
        device,
    )


async def test_nio_clients_exchange_encrypted_messages_before_and_after_an_upgrade(
    ours: OurServer, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(240):
        for localpart in ("alice", "bob"):
            await register_with_shared_secret(
                session, ours.client_url, ours.registration_secret, localpart
            )
        users: list[EncryptedUser] = []
        try:
            for localpart, device in (
                ("alice", "alice-laptop"),
                ("bob", "bob-phone"),
                ("bob", "bob-tablet"),
            ):
                users.append(await _login(session, ours, tmp_path, localpart, device))
            await _scenario(session, ours, tmp_path, users)
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError | KeyboardInterrupt):
                raise
            raise AssertionError(f"{type(e).__name__}: {e}\n\n{ours.log_tail()}") from e
        finally:
            for user in users:
                await user.close()


async def _leave_only_a_fallback_key(
    session: aiohttp.ClientSession, ours: OurServer, claimer: EncryptedUser, device: EncryptedUser
) -> None:
    """Claim every one-time key of ``device`` (each exactly once), so only its fallback key
    is left; further claims keep returning that fallback key."""
    fallback_key = await upload_fallback_key(session, ours.client_url, device)
    uploaded = device.client.olm.uploaded_key_count if device.client.olm else None
    assert uploaded and uploaded > 0, uploaded
    token = str(claimer.client.access_token)
    seen: set[str] = set()
    for _ in range(uploaded):
        claimed = await claim_key(session, ours.client_url, token, device.user_id, device.device_id)
        assert claimed is not None
        key_id, key = claimed
        assert key["key"] != fallback_key and "fallback" not in key, (key_id, key)
        assert key["key"] not in seen, f"one-time key {key_id} handed out twice"
        seen.add(key["key"])
    for _ in range(2):
        claimed = await claim_key(session, ours.client_url, token, device.user_id, device.device_id)
        assert claimed is not None and claimed[1]["key"] == fallback_key, claimed
        assert claimed[1].get("fallback") is True, claimed


async def _scenario(
    session: aiohttp.ClientSession, ours: OurServer, tmp_path: Path, users: list[EncryptedUser]
) -> None:
    """``users``: alice, bob and bob's tablet; alice's phone, logged in later, is appended."""
    alice, bob, bob_tablet = users
    await _leave_only_a_fallback_key(session, ours, alice, bob_tablet)
    alice_token = str(alice.client.access_token)
    bob_token = str(bob.client.access_token)

    room_id = await create_room_by_policy(alice, [bob.user_id], "secrets")
    encryption = await room_encryption_state(session, ours.client_url, alice_token, room_id)
    assert encryption.get("algorithm") == MEGOLM, encryption
    await accept_invite(bob, room_id, WAIT)
    await alice.wait_joined(room_id, bob.user_id, WAIT)

    secrets = list(await exchange_encrypted(alice, bob, room_id, "before", WAIT))
    # bob's tablet syncs for the first time only now, and uploads nothing meanwhile: alice's
    # Olm session to it can only have been built on its fallback key.
    await bob_tablet.sync_until(
        lambda: secrets[0] in bob_tablet.decrypted.get(room_id, []),
        "alice's message, through the fallback key's Olm session",
        WAIT,
        upload_keys=False,
    )
    await assert_server_saw_only_ciphertext(
        session, ours.client_url, bob_token, room_id, {alice.user_id, bob.user_id}, secrets
    )

    upgrade = f"/rooms/{q(room_id)}/upgrade"
    client = Client(session, ours.client_url)
    body = await client.ok("POST", upgrade, alice_token, {"new_version": "11"})
    new_room = str(body["replacement_room"])
    encryption = await room_encryption_state(session, ours.client_url, bob_token, new_room)
    assert encryption.get("algorithm") == MEGOLM, encryption
    await bob.wait_joined(new_room, alice.user_id, WAIT)
    await alice.wait_joined(new_room, bob.user_id, WAIT)

    # A device alice logs in only now reaches bob's client through /sync device_lists.changed
    # (bob queries alice's keys again) and gets bob's next Megolm key.
    alice_phone = await _login(session, ours, tmp_path, "alice", "alice-phone")
    users.append(alice_phone)
    await bob.wait_device_known(alice.user_id, alice_phone.device_id, WAIT)

    after = list(await exchange_encrypted(bob, alice, new_room, "after the upgrade", WAIT))
    for device in (bob_tablet, alice_phone):
        await device.sync_until(
            lambda device=device: set(after) <= set(device.decrypted.get(new_room, [])),
            "both messages in the replacement room",
            WAIT,
        )
    await assert_server_saw_only_ciphertext(
        session, ours.client_url, alice_token, new_room, {alice.user_id, bob.user_id}, after
    )
    for user in (alice, bob, bob_tablet):
        assert not user.plaintext and not user.undecryptable, f"{user.device_id}: {user}"
    # (alice's phone also saw the old room's history, whose keys it was never sent.)
    assert not alice_phone.plaintext, alice_phone.plaintext
