"""End-to-end encryption with a real Synapse (issue 7, "Done when"), on our SQLite and our
PostgreSQL: a matrix-nio device on our server and a matrix-nio device on Synapse (vodozemac's
Olm/Megolm in both) share an encrypted room and decrypt each other's messages.

The room lives on our server, encrypted by our policy (the createRoom request says nothing about
encryption); the Synapse user is invited and joins over federation. For the messages to decrypt,
every piece of the federation side must work both ways:

* Synapse fetches our user's devices and keys (``user/devices``, ``user/keys/query``) and claims
  a one-time key (``user/keys/claim``) when its user shares a Megolm session with ours;
* our server does the same towards Synapse for our user (/keys/query and /keys/claim with a
  remote user);
* the Olm-encrypted room keys travel as ``m.direct_to_device`` EDUs in both directions;
* a device logged in later on either side reaches the other side's client through an
  ``m.device_list_update`` EDU (/sync device_lists.changed → /keys/query again), and its first
  Megolm key needs a fresh one-time key claimed across the federation — the Olm sessions of
  the first exchange cannot carry it.

After an upgrade (second test) the same holds in the replacement room: our server invites the
Synapse user through the federation sender (the invite's stripped state carries
m.room.encryption), he joins over federation through our server, both servers hold the new room
as encrypted, and each user decrypts the other's messages there.

Synapse starts once for the module (its user differs per engine). Waits poll /sync with generous
deadlines and return as soon as the data is there; they are never timing assertions.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.federation.cs_client import register_with_shared_secret
from tests.federation.interop_peer import OurServer
from tests.federation.synapse_harness import SynapseServer, diagnostics, running_synapse
from tests.http_client import Client, q
from tests.real_clients.nio_crypto import (
    MEGOLM,
    EncryptedUser,
    accept_invite,
    assert_server_saw_only_ciphertext,
    create_room_by_policy,
    exchange_encrypted,
    our_server_encrypting_by_policy,
    raw_get,
    room_encryption_state,
)

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SKIP_POSTGRES = os.environ.get("HOMESERVER_TEST_SKIP_POSTGRES") == "1"
WAIT = float(os.environ.get("INTEROP_TIMEOUT", "60"))


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    with running_synapse(tmp_path_factory.mktemp("synapse-e2e")) as server:
        yield server


@pytest.fixture(params=ENGINES)
async def ours(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OurServer]:
    async with our_server_encrypting_by_policy(tmp_path / "ours", request.param) as server:
        yield server


async def test_our_user_and_a_synapse_user_decrypt_each_other(
    ours: OurServer, synapse: SynapseServer, tmp_path: Path
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        diagnostics(ours, synapse),
        asyncio.timeout(4 * WAIT),
        logged_in_pair(session, ours, synapse, tmp_path, f"bob_{ours.engine}") as users,
    ):
        await _scenario(session, ours, synapse, users, tmp_path)


async def test_encrypted_room_upgraded_with_a_synapse_user(
    ours: OurServer, synapse: SynapseServer, tmp_path: Path
) -> None:
    """Our user upgrades the encrypted room; the Synapse user follows the tombstone and the
    invite into the replacement room (joining over federation through our server), which is
    encrypted too, and the two decrypt each other there."""
    async with (
        aiohttp.ClientSession() as session,
        diagnostics(ours, synapse),
        asyncio.timeout(4 * WAIT),
        logged_in_pair(session, ours, synapse, tmp_path, f"bob_upgrade_{ours.engine}") as users,
    ):
        await _upgrade_scenario(session, ours, synapse, users)


@asynccontextmanager
async def logged_in_pair(
    session: aiohttp.ClientSession,
    ours: OurServer,
    synapse: SynapseServer,
    tmp_path: Path,
    bob_localpart: str,
) -> AsyncIterator[list[EncryptedUser]]:
    """[alice on ours, bob on Synapse], each one encrypted device; devices the test appends to
    the list are closed too."""
    await register_with_shared_secret(session, ours.client_url, ours.registration_secret, "alice")
    await register_with_shared_secret(
        session, synapse.client_url, synapse.registration_secret, bob_localpart
    )
    alice = await EncryptedUser.login(
        ours.client_url,
        f"@alice:{ours.server_name}",
        "alice-password-0123456789",
        tmp_path / "stores" / "alice",
        "alice on ours",
    )
    users = [alice]
    try:
        bob = await EncryptedUser.login(
            synapse.client_url,
            f"@{bob_localpart}:{synapse.server_name}",
            f"{bob_localpart}-password-0123456789",
            tmp_path / "stores" / "bob",
            "bob on Synapse",
        )
        users.append(bob)
        yield users
    finally:
        for user in users:
            await user.close()


async def _scenario(
    session: aiohttp.ClientSession,
    ours: OurServer,
    synapse: SynapseServer,
    users: list[EncryptedUser],
    tmp_path: Path,
) -> None:
    """``users`` holds alice and bob; the devices logged in here are appended to it."""
    alice, bob = users
    alice_token = str(alice.client.access_token)
    room_id = await create_room_by_policy(alice, [bob.user_id], "across servers")
    encryption = await room_encryption_state(session, ours.client_url, alice_token, room_id)
    assert encryption.get("algorithm") == MEGOLM, encryption

    await accept_invite(bob, room_id, WAIT)
    await bob.wait_joined(room_id, alice.user_id, WAIT)
    await alice.wait_joined(room_id, bob.user_id, WAIT)

    # ours → Synapse first (our /keys/query + /keys/claim reach Synapse; our to-device EDU is
    # delivered there), then Synapse → ours (Synapse queries and claims from us; its EDU
    # reaches us).
    secrets = list(await exchange_encrypted(alice, bob, room_id, "ours first", WAIT))
    secrets += await exchange_encrypted(bob, alice, room_id, "Synapse first", WAIT)

    # A second device on each side, known to the other side only through device-list EDUs.
    alice_phone = await EncryptedUser.login(
        ours.client_url,
        alice.user_id,
        "alice-password-0123456789",
        tmp_path / "stores" / "alice-phone",
        "alice's phone",
    )
    users.append(alice_phone)
    bob_tablet = await EncryptedUser.login(
        synapse.client_url,
        bob.user_id,
        f"{bob.user_id[1:].split(':')[0]}-password-0123456789",
        tmp_path / "stores" / "bob-tablet",
        "bob's tablet",
    )
    users.append(bob_tablet)
    await alice.wait_device_known(bob.user_id, bob_tablet.device_id, WAIT)
    await bob.wait_device_known(alice.user_id, alice_phone.device_id, WAIT)

    to_new_devices = "ours to both new devices"
    await alice.send_encrypted(room_id, to_new_devices)
    back_to_new_devices = "Synapse to both new devices"
    await bob.send_encrypted(room_id, back_to_new_devices)
    for device in (bob_tablet, alice_phone):
        await device.sync_until(
            lambda device=device: (
                {to_new_devices, back_to_new_devices} <= set(device.decrypted.get(room_id, []))
            ),
            "both messages sent after it logged in",
            WAIT,
        )
    await bob.wait_decrypted(room_id, to_new_devices, WAIT)
    await alice.wait_decrypted(room_id, back_to_new_devices, WAIT)
    secrets += [to_new_devices, back_to_new_devices]

    senders = {alice.user_id, bob.user_id}
    await assert_server_saw_only_ciphertext(
        session, ours.client_url, alice_token, room_id, senders, secrets
    )
    await assert_server_saw_only_ciphertext(
        session, synapse.client_url, str(bob.client.access_token), room_id, senders, secrets
    )
    # (The new devices' first syncs also held the earlier messages, whose Megolm keys were
    # never shared with them: undecryptable for them, as they must be.)
    for user in (alice, bob):
        assert not user.plaintext and not user.undecryptable, f"{user.user_id}: {user}"
    for user in (alice_phone, bob_tablet):
        assert not user.plaintext, user.plaintext


async def _upgrade_scenario(
    session: aiohttp.ClientSession,
    ours: OurServer,
    synapse: SynapseServer,
    users: list[EncryptedUser],
) -> None:
    alice, bob = users
    alice_token = str(alice.client.access_token)
    bob_token = str(bob.client.access_token)
    old_room = await create_room_by_policy(alice, [bob.user_id], "to be upgraded")
    await accept_invite(bob, old_room, WAIT)
    await bob.wait_joined(old_room, alice.user_id, WAIT)
    await alice.wait_joined(old_room, bob.user_id, WAIT)
    old_secrets = list(await exchange_encrypted(alice, bob, old_room, "before the upgrade", WAIT))

    new_room = await upgrade_room(session, ours.client_url, alice_token, old_room, "12")
    # Synapse's client: the tombstone in the old room, and the invite our server sent it
    # through the federation sender (carrying the encryption in its stripped state).
    await bob.sync_until(
        lambda: (
            bob.client.rooms[old_room].replacement_room == new_room
            and new_room in bob.client.invited_rooms
        ),
        f"the tombstone of {old_room} and the invite to {new_room}",
        WAIT,
    )
    # (nio keeps only members, name and alias of an invite's stripped state: read it raw.)
    invite_state = await raw_invite_state(session, synapse.client_url, bob_token, new_room)
    assert any(
        event["type"] == "m.room.encryption" and event["content"].get("algorithm") == MEGOLM
        for event in invite_state
    ), invite_state
    # nio joins by room id alone: Synapse goes through the inviting server (ours).
    await accept_invite(bob, new_room, WAIT)
    await bob.wait_joined(new_room, alice.user_id, WAIT)
    await alice.wait_joined(new_room, bob.user_id, WAIT)

    # The replacement room, as each server holds it: encrypted, and the old room's successor.
    for base_url, token in ((ours.client_url, alice_token), (synapse.client_url, bob_token)):
        encryption = await room_encryption_state(session, base_url, token, new_room)
        assert encryption.get("algorithm") == MEGOLM, (base_url, encryption)
        create = await room_state(session, base_url, token, new_room, "m.room.create")
        assert create.get("predecessor", {}).get("room_id") == old_room, (base_url, create)

    # Synapse → ours first this time: each side starts a new Megolm session for the new room.
    new_secrets = list(await exchange_encrypted(bob, alice, new_room, "after the upgrade", WAIT))

    senders = {alice.user_id, bob.user_id}
    for room_id, secrets in ((old_room, old_secrets), (new_room, new_secrets)):
        for base_url, token in ((ours.client_url, alice_token), (synapse.client_url, bob_token)):
            await assert_server_saw_only_ciphertext(
                session, base_url, token, room_id, senders, secrets
            )
    for user in (alice, bob):
        assert not user.plaintext and not user.undecryptable, f"{user.user_id}: {user}"


async def upgrade_room(
    session: aiohttp.ClientSession, base_url: str, token: str, room_id: str, new_version: str
) -> str:
    """POST /upgrade (nio's own room_upgrade only emulates one client-side)."""
    path = f"/rooms/{q(room_id)}/upgrade"
    body = await Client(session, base_url).ok("POST", path, token, {"new_version": new_version})
    return str(body["replacement_room"])


async def room_state(
    session: aiohttp.ClientSession, base_url: str, token: str, room_id: str, event_type: str
) -> dict[str, Any]:
    status, text = await raw_get(
        session, base_url, f"/_matrix/client/v3/rooms/{q(room_id)}/state/{event_type}", token
    )
    assert status == 200, (status, text)
    return dict(json.loads(text))


async def raw_invite_state(
    session: aiohttp.ClientSession, base_url: str, token: str, room_id: str
) -> list[dict[str, Any]]:
    """The stripped state of the invite to ``room_id``, from an initial /sync beside the
    client's own (no ``since``: it acknowledges nothing)."""
    room_filter = json.dumps({"room": {"rooms": [room_id], "timeline": {"limit": 1}}})
    status, text = await raw_get(
        session, base_url, f"/_matrix/client/v3/sync?filter={q(room_filter)}", token
    )
    assert status == 200, (status, text)
    invite = json.loads(text)["rooms"].get("invite", {}).get(room_id)
    assert invite is not None, text
    return list(invite["invite_state"]["events"])
