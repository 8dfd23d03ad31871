"""Every endpoint of Synapse's admin API: 401 without a token, 403 ``M_FORBIDDEN`` for a user who
is not a server admin — and, for an admin, not one of those."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.config import HomeserverConfig
from tests.admin.helpers import (
    V1,
    V2,
    deletions_finish,  # noqa: F401 (fixture)
)
from tests.builders import generous_config
from tests.harness import TestServer

pytestmark = pytest.mark.usefixtures("deletions_finish")

ROOM = "!nowhere:test.example"
USER = "@bob:test.example"
DEST = "remote.example"

#: (method, path, body) of every admin endpoint that needs an admin.
ENDPOINTS = [
    ("GET", f"{V1}/rooms", None),
    ("GET", f"{V1}/rooms/{ROOM}", None),
    ("GET", f"{V1}/rooms/{ROOM}/members", None),
    ("GET", f"{V1}/rooms/{ROOM}/state", None),
    ("DELETE", f"{V2}/rooms/{ROOM}", {}),
    ("GET", f"{V2}/rooms/{ROOM}/delete_status", None),
    ("GET", f"{V2}/rooms/delete_status/abc", None),
    ("GET", f"{V2}/users", None),
    ("GET", f"{V2}/users/{USER}", None),
    ("PUT", f"{V2}/users/{USER}", {"displayname": "Bob"}),
    ("POST", f"{V1}/deactivate/{USER}", {}),
    ("GET", f"{V1}/whois/{USER}", None),
    ("GET", "/_synapse/admin/v3/users", None),
    ("GET", f"{V1}/username_available?username=newname", None),
    ("GET", f"{V2}/users/{USER}/devices", None),
    ("POST", f"{V2}/users/{USER}/devices", {"device_id": "EVIL"}),
    ("GET", f"{V2}/users/{USER}/devices/BOBDEV", None),
    ("PUT", f"{V2}/users/{USER}/devices/BOBDEV", {"display_name": "pwned"}),
    ("DELETE", f"{V2}/users/{USER}/devices/BOBDEV", None),
    ("POST", f"{V2}/users/{USER}/delete_devices", {"devices": ["BOBDEV"]}),
    ("GET", f"{V1}/users/{USER}/joined_rooms", None),
    ("GET", f"{V1}/users/{USER}/memberships", None),
    ("GET", f"{V1}/users/{USER}/pushers", None),
    ("GET", f"{V1}/users/{USER}/accountdata", None),
    ("PUT", f"{V1}/suspend/{USER}", {"suspend": True}),
    ("POST", f"{V1}/users/{USER}/_allow_cross_signing_replacement_without_uia", {}),
    ("POST", f"{V1}/account_validity/validity", {"user_id": USER}),
    ("GET", f"{V1}/threepid/email/users/bob@example.org", None),
    ("GET", f"{V1}/auth_providers/oidc/users/bob", None),
    ("POST", f"{V1}/user/{USER}/redact", {"rooms": []}),
    ("GET", f"{V1}/user/redact_status/nope", None),
    ("GET", f"{V1}/users/{USER}/sent_invite_count?from_ts=0", None),
    ("GET", f"{V1}/users/{USER}/cumulative_joined_room_count?from_ts=0", None),
    ("GET", f"{V1}/users/{USER}/override_ratelimit", None),
    ("POST", f"{V1}/users/{USER}/override_ratelimit", {"messages_per_second": 0}),
    ("DELETE", f"{V1}/users/{USER}/override_ratelimit", None),
    ("GET", f"{V1}/experimental_features/{USER}", None),
    ("PUT", f"{V1}/experimental_features/{USER}", {"features": {"msc3881": True}}),
    ("POST", f"{V1}/users/{USER}/shadow_ban", {}),
    ("DELETE", f"{V1}/users/{USER}/shadow_ban", None),
    ("POST", f"{V1}/users/{USER}/login", {}),
    ("POST", f"{V1}/reset_password/{USER}", {"new_password": "a new password"}),
    ("GET", f"{V1}/registration_tokens", None),
    ("POST", f"{V1}/registration_tokens/new", {"token": "evil"}),
    ("GET", f"{V1}/registration_tokens/abc", None),
    ("PUT", f"{V1}/registration_tokens/abc", {"uses_allowed": 1}),
    ("DELETE", f"{V1}/registration_tokens/abc", None),
    ("GET", f"{V1}/federation/destinations", None),
    ("GET", f"{V1}/federation/destinations/{DEST}", None),
    ("POST", f"{V1}/federation/destinations/{DEST}/reset_connection", {}),
]


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def test_every_endpoint_refuses_anonymous_and_non_admin_callers(server: TestServer) -> None:
    mallory = await server.register("mallory")
    admin = await server.register("root", admin=True)
    bob = await server.register("bob")
    await server.login_device(bob, "BOBDEV")
    for method, path, body in ENDPOINTS:
        status, answer = await server.call(method, path, json=body)
        assert status == 401, (method, path, answer)
        assert answer["errcode"] == "M_MISSING_TOKEN"
        status, answer = await server.call(method, path, mallory, json=body)
        assert status == 403, (method, path, answer)
        assert answer == {"errcode": "M_FORBIDDEN", "error": "You are not a server admin"}
    # Nothing a refused caller asked for happened.
    record = await server.hs.store.users.get_user("@bob:test.example")
    assert record is not None and not record.deactivated
    profile = await server.hs.store.profiles.get_profile("@bob:test.example")
    assert profile.displayname != "Bob"
    store = server.hs.store
    device = await store.users.get_device(USER, "BOBDEV")
    assert device is not None and device.display_name is None
    assert await store.users.get_device(USER, "EVIL") is None
    assert await store.admin_user_data.get_ratelimit(USER) is None
    assert await store.admin_user_data.enabled_features(USER) == set()
    assert await store.admin_user_data.shadow_banned_users() == set()
    assert await store.admin_user_data.suspended_users() == set()
    assert await store.registration_tokens.list_tokens() == []
    assert (await server.call("GET", "/account/whoami", bob))[0] == 200
    assert (await store.users.get_user(USER)).password_hash is None
    for method, path, body in ENDPOINTS:
        status, answer = await server.call(method, path, admin, json=body)
        assert status not in (401, 403), (method, path, answer)
        assert status < 500, (method, path, answer)
    await server.hs.user_redactions.wait_idle()


async def test_an_unknown_token_is_401(server: TestServer) -> None:
    status, answer = await server.call(
        "GET", f"{V1}/rooms", headers={"Authorization": "Bearer nope"}
    )
    assert status == 401 and answer["errcode"] == "M_UNKNOWN_TOKEN"


async def test_server_version_is_public_as_in_synapse(server: TestServer) -> None:
    from homeserver import __version__

    status, answer = await server.call("GET", f"{V1}/server_version")
    assert status == 200 and answer == {"server_version": __version__}


async def test_whois_of_oneself_needs_no_admin(server: TestServer) -> None:
    mallory = await server.register("mallory")
    status, answer = await server.call("GET", f"{V1}/whois/{mallory.user_id}", mallory)
    assert status == 200, answer
    assert answer["user_id"] == mallory.user_id
    # The whois request itself was recorded (address, user agent, time in ms).
    (connection,) = answer["devices"][mallory.device_id]["sessions"][0]["connections"]
    assert connection["ip"] == "127.0.0.1"
    assert connection["user_agent"].startswith("Python/")
    assert isinstance(connection["last_seen"], int) and connection["last_seen"] > 10**12
