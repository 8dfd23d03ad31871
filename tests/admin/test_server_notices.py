"""Server notices: ``POST /_synapse/admin/v1/send_server_notice`` and ``PUT …/{txnId}``, the
notices user and one notices room per recipient, as Synapse."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.config import HomeserverConfig
from homeserver.config.server_notices import ServerNoticesConfig
from tests.admin.helpers import V1
from tests.builders import generous_config
from tests.harness import TestServer

NOTICES = "@notices:test.example"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(
        tmp_path,
        server_notices={
            "system_mxid_localpart": "notices",
            "system_mxid_display_name": "Server Notices",
            "room_name": "Notices",
            "room_topic": "From the admins",
        },
    )


def _notice(user_id: str, text: str) -> dict[str, object]:
    return {"user_id": user_id, "content": {"msgtype": "m.text", "body": text}}


async def test_server_notices(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    store = server.hs.store
    status, body = await server.call(
        "POST", f"{V1}/send_server_notice", admin, json=_notice(alice.user_id, "first")
    )
    assert status == 200 and set(body) == {"event_id"}, body
    first = await store.events.get_event(body["event_id"])
    assert first is not None and first.sender == NOTICES
    room = first.room_id
    # The notices user exists with its name; the room is named, not federated, and alice is
    # invited to it, tagged m.server_notice, and may not speak there.
    assert (await store.profiles.get_profile(NOTICES)).displayname == "Server Notices"
    create = await store.state.get_current_state_event(room, "m.room.create")
    assert create is not None and create.content.get("m.federate") is False
    name = await store.state.get_current_state_event(room, "m.room.name")
    assert name is not None and name.content["name"] == "Notices"
    member = await store.state.get_current_state_event(room, "m.room.member", alice.user_id)
    assert member is not None and member.membership == "invite"
    status, tags = await server.call("GET", f"/user/{alice.user_id}/rooms/{room}/tags", alice)
    assert tags == {"tags": {"m.server_notice": {}}}
    status, _ = await server.call("POST", f"/rooms/{room}/join", alice, json={})
    assert status == 200
    status, _ = await server.call(
        "PUT", f"/rooms/{room}/send/m.room.message/x", alice, json={"body": "hi"}
    )
    assert status == 403

    # The next notice reuses the room; a transaction ID is answered once.
    for _ in range(2):
        status, body = await server.call(
            "PUT", f"{V1}/send_server_notice/t1", admin, json=_notice(alice.user_id, "second")
        )
        assert status == 200
        again = await store.events.get_event(body["event_id"])
        assert again is not None and again.room_id == room
    messages = await store.db.fetchval(
        "SELECT COUNT(*) FROM events WHERE room_id = ? AND type = 'm.room.message'", room
    )
    assert int(messages) == 2

    # Alice leaves: she cannot rejoin (invite only), and the next notice opens a new room.
    status, _ = await server.call("POST", f"/rooms/{room}/leave", alice, json={})
    assert status == 200
    status, _ = await server.call("POST", f"/rooms/{room}/join", alice, json={})
    assert status == 403
    status, body = await server.call(
        "POST", f"{V1}/send_server_notice", admin, json=_notice(alice.user_id, "third")
    )
    assert status == 200
    third = await store.events.get_event(body["event_id"])
    assert third is not None and third.room_id != room

    # Refusals store nothing.
    before = int(await store.db.fetchval("SELECT COUNT(*) FROM events"))
    for bad, code in (
        (_notice("@ghost:test.example", "x"), 404),
        (_notice("@bob:elsewhere.example", "x"), 400),
        ({"user_id": alice.user_id}, 400),
        ({"user_id": alice.user_id, "content": "x"}, 400),
        ({**_notice(alice.user_id, "x"), "type": 5}, 400),
    ):
        status, body = await server.call("POST", f"{V1}/send_server_notice", admin, json=bad)
        assert status == code, (bad, body)
    server.hs.server_notices.config = ServerNoticesConfig()
    status, body = await server.call(
        "POST", f"{V1}/send_server_notice", admin, json=_notice(alice.user_id, "x")
    )
    assert status == 400 and "not enabled" in body["error"]
    assert int(await store.db.fetchval("SELECT COUNT(*) FROM events")) == before
