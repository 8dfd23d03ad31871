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
    await server.register("bob")
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
    for method, path, body in ENDPOINTS:
        status, answer = await server.call(method, path, admin, json=body)
        assert status not in (401, 403), (method, path, answer)
        assert status < 500, (method, path, answer)


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
    connections = answer["devices"][mallory.device_id]["sessions"][0]["connections"]
    assert connections == [{"ip": None, "last_seen": None, "user_agent": None}]
