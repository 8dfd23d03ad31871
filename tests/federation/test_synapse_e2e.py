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

Synapse starts once for the module (its user differs per engine). Waits poll /sync with generous
deadlines and return as soon as the data is there; they are never timing assertions.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.nio_crypto import (
    ENCRYPTION_BY_POLICY,
    MEGOLM,
    EncryptedUser,
    accept_invite,
    add_config,
    assert_server_saw_only_ciphertext,
    create_room_by_policy,
    exchange_encrypted,
    room_encryption_state,
)
from tests.federation.cs_client import register_with_shared_secret
from tests.federation.interop_peer import OurServer
from tests.federation.synapse_harness import SynapseServer

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
SKIP_POSTGRES = os.environ.get("HOMESERVER_TEST_SKIP_POSTGRES") == "1"
WAIT = float(os.environ.get("INTEROP_TIMEOUT", "60"))


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    server = SynapseServer(tmp_path_factory.mktemp("synapse-e2e"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=ENGINES)
async def ours(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OurServer]:
    if request.param == "postgres" and SKIP_POSTGRES:
        pytest.skip("!!! PostgreSQL tests SKIPPED: HOMESERVER_TEST_SKIP_POSTGRES=1 !!!")
    server = OurServer(tmp_path / "ours", request.param)
    await server.create()
    assert server.config_path is not None
    add_config(server.config_path, ENCRYPTION_BY_POLICY)
    try:
        server.start()
        yield server
    finally:
        await server.destroy()


@asynccontextmanager
async def diagnostics(ours: OurServer, synapse: SynapseServer) -> AsyncIterator[None]:
    """On failure, re-raise with both servers' logs; on success, our log must be clean."""
    try:
        yield
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError | KeyboardInterrupt):
            raise
        errors = "\n".join(synapse.errors_in_log()[-30:])
        raise AssertionError(
            f"{type(e).__name__}: {e}\n\n{ours.log_tail(8000)}\n\n--- Synapse errors ---\n"
            f"{errors}\n\n{synapse.log_tail(6000)}"
        ) from e
    assert "Traceback" not in ours.log(), ours.log_tail(12000)


async def test_our_user_and_a_synapse_user_decrypt_each_other(
    ours: OurServer, synapse: SynapseServer, tmp_path: Path
) -> None:
    bob_localpart = f"bob_{ours.engine}"
    async with aiohttp.ClientSession() as session, diagnostics(ours, synapse):
        async with asyncio.timeout(4 * WAIT):
            await register_with_shared_secret(
                session, ours.client_url, ours.registration_secret, "alice"
            )
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
            bob = await EncryptedUser.login(
                synapse.client_url,
                f"@{bob_localpart}:{synapse.server_name}",
                f"{bob_localpart}-password-0123456789",
                tmp_path / "stores" / "bob",
                "bob on Synapse",
            )
            users = [alice, bob]
            try:
                await _scenario(session, ours, synapse, users, tmp_path)
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
