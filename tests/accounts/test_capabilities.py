"""``GET /capabilities``."""

from __future__ import annotations

from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.harness import TestServer


async def test_capabilities(server: TestServer) -> None:
    user = await server.register("alice")
    status, body = await server.call("GET", "/capabilities", user)
    assert status == 200
    caps = body["capabilities"]
    versions = caps["m.room_versions"]
    assert versions["default"] == server.hs.config.server.default_room_version
    assert set(versions["available"]) == set(KNOWN_ROOM_VERSIONS)
    assert set(versions["available"].values()) <= {"stable", "unstable"}
    assert caps["m.change_password"] == {"enabled": True}
    assert caps["m.set_displayname"] == {"enabled": True}
    assert caps["m.set_avatar_url"] == {"enabled": True}
    assert caps["m.3pid_changes"] == {"enabled": False}
    assert caps["m.get_login_token"] == {"enabled": False}
