"""Every path that removes a device removes its keys in the same transaction and records the
change: DELETE /devices, logout, a password change, admin deactivation (both engines)."""

from __future__ import annotations

from typing import Any

from tests.e2e_keys.helpers import (
    PASSWORD,
    claim,
    give_password,
    key_rows,
    password_auth,
    query,
    upload,
    upload_device,
)
from tests.harness import TestServer as Server
from tests.harness import TestUser as User

NO_ROWS = {"e2e_device_keys": 0, "e2e_one_time_keys": 0, "e2e_fallback_keys": 0}


async def device_with_keys(server: Server, user: User, device_id: str) -> User:
    device = await server.login_device(user, device_id)
    keys = await upload_device(server, device, otks=3)
    fallback = {"signed_curve25519:FB": keys.one_time_key("FB", fallback=True)}
    assert (await upload(server, device, {"fallback_keys": fallback}))[0] == 200
    assert await key_rows(server, user.user_id, device_id) == {
        "e2e_device_keys": 1,
        "e2e_one_time_keys": 3,
        "e2e_fallback_keys": 1,
    }
    return device


async def assert_gone(server: Server, asker: User, owner: User, device: User) -> None:
    assert await key_rows(server, owner.user_id, device.device_id) == NO_ROWS
    assert (
        device.device_id
        not in (await query(server, asker, owner.user_id))["device_keys"][owner.user_id]
    )
    assert await claim(server, asker, device) == {}


async def test_delete_device_removes_keys_and_records_a_change(server: Server) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    await give_password(server, alice)
    phone = await device_with_keys(server, alice, "PHONE")
    await upload_device(server, alice)
    lists = server.hs.store.device_lists
    before = await lists.get_position()

    status, answer = await server.call("DELETE", "/devices/PHONE", alice, json={})
    assert status == 401
    body: dict[str, Any] = {"auth": password_auth(alice, answer["session"])}
    assert (await server.call("DELETE", "/devices/PHONE", alice, json=body))[0] == 200

    await assert_gone(server, bob, alice, phone)
    assert await lists.get_changed_users(before, await lists.get_position()) == {alice.user_id}
    # The other device keeps its keys.
    assert (
        alice.device_id in (await query(server, bob, alice.user_id))["device_keys"][alice.user_id]
    )


async def test_bulk_delete_devices(server: Server) -> None:
    alice = await server.register("alice")
    await give_password(server, alice)
    one = await device_with_keys(server, alice, "ONE")
    two = await device_with_keys(server, alice, "TWO")
    body = {"devices": ["ONE", "TWO", "NEVER"], "auth": password_auth(alice)}
    assert (await server.call("POST", "/delete_devices", alice, json=body))[0] == 200
    await assert_gone(server, alice, alice, one)
    await assert_gone(server, alice, alice, two)


async def test_logout_removes_keys(server: Server) -> None:
    alice = await server.register("alice")
    phone = await device_with_keys(server, alice, "PHONE")
    assert (await server.call("POST", "/logout", phone, json={}))[0] == 200
    await assert_gone(server, alice, alice, phone)


async def test_logout_all_removes_keys(server: Server) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    phone = await device_with_keys(server, alice, "PHONE")
    assert (await server.call("POST", "/logout/all", alice, json={}))[0] == 200
    await assert_gone(server, bob, alice, phone)


async def test_password_change_removes_the_other_devices_keys(server: Server) -> None:
    alice = await server.register("alice")
    await give_password(server, alice)
    await upload_device(server, alice)
    phone = await device_with_keys(server, alice, "PHONE")
    body = {"new_password": PASSWORD + "!", "auth": password_auth(alice)}
    status, answer = await server.call("POST", "/account/password", alice, json=body)
    assert status == 200, answer
    await assert_gone(server, alice, alice, phone)
    assert (await key_rows(server, alice.user_id, alice.device_id))["e2e_device_keys"] == 1


async def test_admin_deactivation_removes_keys(server: Server) -> None:
    admin = await server.register("admin", admin=True)
    alice = await server.register("alice")
    phone = await device_with_keys(server, alice, "PHONE")
    status, answer = await server.call(
        "POST", f"/_synapse/admin/v1/deactivate/{alice.user_id}", admin, json={}
    )
    assert status == 200, answer
    await assert_gone(server, admin, alice, phone)
