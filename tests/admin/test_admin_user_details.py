"""The admin API's per-user endpoints (issue 19), each answer's keys and units compared with
Synapse's documented answer (``docs/admin_api/user_admin_api.md``), on both engines; who may
call them is tests/admin/test_admin_auth.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from tests.admin.helpers import V1, V2, join
from tests.builders import create_room, generous_config
from tests.e2e_keys.helpers import CrossSigning
from tests.harness import TestServer, TestUser

V3 = "/_synapse/admin/v3"
UA = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0"

#: Synapse's documented keys.
DEVICE_KEYS = {
    "device_id",
    "display_name",
    "last_seen_ip",
    "last_seen_user_agent",
    "last_seen_ts",
    "user_id",
    "dehydrated",
}
PUSHER_KEYS = {
    "app_display_name",
    "app_id",
    "data",
    "device_display_name",
    "kind",
    "lang",
    "profile_tag",
    "pushkey",
}
TOKEN_KEYS = {"token", "uses_allowed", "pending", "completed", "expiry_time"}


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(
        tmp_path,
        rc_message={"per_second": 0.001, "burst_count": 3},
        enable_registration=True,
        registration_requires_token=True,
    )


async def _get(server: TestServer, caller: TestUser, path: str) -> Any:
    status, body = await server.call("GET", path, caller)
    assert status == 200, (path, body)
    return body


async def test_one_user_in_seconds_the_list_in_ms_and_v3_filters(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    bob = await server.register("bob")
    await server.call("POST", f"{V1}/deactivate/@carol:test.example", admin, json={})
    await server.register("carol")
    status, _ = await server.call("POST", f"{V1}/deactivate/@carol:test.example", admin, json={})
    assert status == 200
    created_ms = (await server.hs.store.users.get_user(bob.user_id)).created_ts

    one = await _get(server, admin, f"{V2}/users/{bob.user_id}")
    assert one["creation_ts"] == created_ms // 1000  # seconds, as Synapse on this endpoint
    assert one["shadow_banned"] is False and one["locked"] is False
    listed = await _get(server, admin, f"{V2}/users?name=bob")
    assert listed["users"][0]["creation_ts"] == created_ms  # the list keeps milliseconds

    # v3: deactivated unset → everyone; true → only deactivated; false → only active.
    everyone = await _get(server, admin, f"{V3}/users")
    assert {u["name"] for u in everyone["users"]} >= {bob.user_id, "@carol:test.example"}
    assert everyone["total"] == 3
    only = await _get(server, admin, f"{V3}/users?deactivated=true")
    assert [u["name"] for u in only["users"]] == ["@carol:test.example"]
    active = await _get(server, admin, f"{V3}/users?deactivated=false&admins=false")
    assert [u["name"] for u in active["users"]] == [bob.user_id]
    v2 = await _get(server, admin, f"{V2}/users")  # v2 leaves deactivated users out
    assert "@carol:test.example" not in {u["name"] for u in v2["users"]}
    status, body = await server.call("GET", f"{V3}/users?deactivated=maybe", admin)
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"

    assert await _get(server, admin, f"{V1}/username_available?username=newbie") == {
        "available": True
    }
    status, body = await server.call("GET", f"{V1}/username_available?username=bob", admin)
    assert status == 400 and body["errcode"] == "M_USER_IN_USE"
    status, body = await server.call("GET", f"{V1}/username_available?username=B%20B", admin)
    assert status == 400 and body["errcode"] == "M_INVALID_USERNAME"
    status, body = await server.call("GET", f"{V1}/username_available", admin)
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"


async def test_devices_with_client_addresses_and_whois(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    bob = await server.register("bob")
    phone = await server.login_device(bob, "PHONE")
    status, _ = await server.call("GET", "/account/whoami", phone, headers={"User-Agent": UA})
    assert status == 200

    listed = await _get(server, admin, f"{V2}/users/{bob.user_id}/devices")
    assert listed["total"] == 2
    by_id = {d["device_id"]: d for d in listed["devices"]}
    used = by_id["PHONE"]
    assert set(used) == DEVICE_KEYS - {"display_name"}  # absent when unset, as Synapse
    assert used["last_seen_ip"] == "127.0.0.1" and used["last_seen_user_agent"] == UA
    assert used["last_seen_ts"] > 10**12 and used["user_id"] == bob.user_id
    assert by_id[bob.device_id]["last_seen_ts"] is None  # never used

    # The client's own /devices shows the same.
    mine = await _get(server, phone, "/devices")
    phone_entry = next(d for d in mine["devices"] if d["device_id"] == "PHONE")
    assert phone_entry["last_seen_ip"] == "127.0.0.1" and phone_entry["last_seen_ts"] > 10**12

    status, _ = await server.call(
        "PUT", f"{V2}/users/{bob.user_id}/devices/PHONE", admin, json={"display_name": "Pixel"}
    )
    assert status == 200
    one = await _get(server, admin, f"{V2}/users/{bob.user_id}/devices/PHONE")
    assert set(one) == DEVICE_KEYS and one["display_name"] == "Pixel"
    status, body = await server.call("GET", f"{V2}/users/{bob.user_id}/devices/NOPE", admin)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.call("GET", f"{V2}/users/@ghost:test.example/devices", admin)
    assert status == 404
    status, body = await server.call("GET", f"{V2}/users/@bob:elsewhere.example/devices", admin)
    assert status == 400

    # whois: device → sessions → connections (ip, last_seen in ms, user_agent).
    whois = await _get(server, admin, f"{V1}/whois/{bob.user_id}")
    connections = whois["devices"]["PHONE"]["sessions"][0]["connections"]
    assert {"ip": "127.0.0.1", "last_seen": used["last_seen_ts"], "user_agent": UA} in connections
    assert len(connections) == 2  # and the client's own GET /devices, with aiohttp's agent

    # Deleting a device ends its sessions, as the client API does.
    status, _ = await server.call("DELETE", f"{V2}/users/{bob.user_id}/devices/PHONE", admin)
    assert status == 200
    assert (await server.call("GET", "/account/whoami", phone))[0] == 401
    status, _ = await server.call(
        "POST", f"{V2}/users/{bob.user_id}/devices", admin, json={"device_id": "NEWDEV"}
    )
    assert status == 201
    status, _ = await server.call(
        "POST",
        f"{V2}/users/{bob.user_id}/delete_devices",
        admin,
        json={"devices": [bob.device_id, "NEWDEV", "UNKNOWN"]},
    )
    assert status == 200
    assert (await server.call("GET", "/account/whoami", bob))[0] == 401
    assert (await _get(server, admin, f"{V2}/users/{bob.user_id}/devices"))["total"] == 0

    # Retention: uses older than user_ips_max_age are swept (whois then shows none).
    recorder = server.hs.accounts.client_ips
    await recorder.flush()
    assert await server.hs.store.client_ips.sweep(server.hs.clock() + 1) >= 1
    assert await server.hs.store.client_ips.connections(bob.user_id) == []


async def test_user_tabs(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    bob = await server.register("bob")
    alice = await server.register("alice")
    room_id = await create_room(server, alice, preset="public_chat")
    other = await create_room(server, alice)
    await server.call("POST", f"/rooms/{other}/invite", alice, json={"user_id": bob.user_id})
    await join(server, bob, room_id)
    await server.call("PUT", f"/user/{bob.user_id}/account_data/org.example.x", bob, json={"a": 1})
    await server.call(
        "PUT", f"/user/{bob.user_id}/rooms/{room_id}/account_data/org.example.y", bob, json={"b": 2}
    )
    joined = await _get(server, admin, f"{V1}/users/{bob.user_id}/joined_rooms")
    assert joined == {"joined_rooms": [room_id], "total": 1}
    memberships = await _get(server, admin, f"{V1}/users/{bob.user_id}/memberships")
    assert memberships == {"memberships": {room_id: "join", other: "invite"}}
    data = await _get(server, admin, f"{V1}/users/{bob.user_id}/accountdata")
    assert data["account_data"]["global"]["org.example.x"] == {"a": 1}
    assert data["account_data"]["rooms"] == {room_id: {"org.example.y": {"b": 2}}}
    pushers = await _get(server, admin, f"{V1}/users/{bob.user_id}/pushers")
    assert pushers == {"pushers": [], "total": 0}

    invites = await _get(server, admin, f"{V1}/users/{alice.user_id}/sent_invite_count?from_ts=0")
    assert invites == {"invite_count": 1}
    late = f"{V1}/users/{alice.user_id}/sent_invite_count?from_ts={server.hs.clock() + 10**6}"
    assert await _get(server, admin, late) == {"invite_count": 0}
    joins = await _get(
        server, admin, f"{V1}/users/{bob.user_id}/cumulative_joined_room_count?from_ts=0"
    )
    assert joins == {"cumulative_joined_room_count": 1}
    status, body = await server.call("GET", f"{V1}/users/{bob.user_id}/sent_invite_count", admin)
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"

    features = await _get(server, admin, f"{V1}/experimental_features/{bob.user_id}")
    assert features == {"features": {"msc3881": False, "msc3575": False, "msc4222": False}}
    status, _ = await server.call(
        "PUT",
        f"{V1}/experimental_features/{bob.user_id}",
        admin,
        json={"features": {"msc3881": True}},
    )
    assert status == 200
    features = await _get(server, admin, f"{V1}/experimental_features/{bob.user_id}")
    assert features["features"]["msc3881"] is True
    status, body = await server.call(
        "PUT",
        f"{V1}/experimental_features/{bob.user_id}",
        admin,
        json={"features": {"msc9999": True}},
    )
    assert status == 400


async def _send(server: TestServer, user: TestUser, room_id: str, txn: str) -> tuple[int, Any]:
    return await server.call(
        "PUT",
        f"/rooms/{room_id}/send/m.room.message/{txn}",
        user,
        json={"msgtype": "m.text", "body": txn},
    )


async def test_rate_limit_overrides_are_honoured(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    bob = await server.register("bob")
    room_id = await create_room(server, bob)
    path = f"{V1}/users/{bob.user_id}/override_ratelimit"
    assert await _get(server, admin, path) == {}

    # rc_message here allows 3 at once: the 4th is refused …
    statuses = [(await _send(server, bob, room_id, f"a{i}"))[0] for i in range(4)]
    assert statuses == [200, 200, 200, 429]
    # … a rate of 0 exempts the user (and from the other per-user limiters, as Synapse) …
    status, body = await server.call("POST", path, admin, json={})
    assert status == 200 and body == {"messages_per_second": 0, "burst_count": 0}
    for i in range(6):
        assert (await _send(server, bob, room_id, f"b{i}"))[0] == 200
    assert server.hs.ratelimiters.joins_local.is_exempt(bob.user_id)
    # … and a rate and burst replace rc_message's.
    status, body = await server.call(
        "POST", path, admin, json={"messages_per_second": 1, "burst_count": 8}
    )
    assert body == {"messages_per_second": 1, "burst_count": 8}
    assert not server.hs.ratelimiters.joins_local.is_exempt(bob.user_id)
    # The 3 actions already counted stay counted (as Synapse's limiter): 5 more fit in 8.
    statuses = [(await _send(server, bob, room_id, f"c{i}"))[0] for i in range(9)]
    assert 5 <= statuses.count(200) <= 6 and statuses[-1] == 429
    assert await _get(server, admin, path) == {"messages_per_second": 1, "burst_count": 8}

    status, body = await server.call("POST", path, admin, json={"messages_per_second": -1})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await server.call("POST", path, admin, json={"burst_count": "3"})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    assert (await server.call("DELETE", path, admin))[0] == 200
    assert await _get(server, admin, path) == {}
    assert (await _send(server, bob, room_id, "d"))[0] == 429  # back to rc_message
    status, _ = await server.call(
        "GET", f"{V1}/users/@ghost:test.example/override_ratelimit", admin
    )
    assert status == 404


async def test_shadow_banned_events_are_answered_but_never_stored(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    bob = await server.register("bob")
    alice = await server.register("alice")
    carol = await server.register("carol")
    room_id = await create_room(server, alice, preset="public_chat")
    await join(server, bob, room_id)
    assert (await server.call("POST", f"{V1}/users/{bob.user_id}/shadow_ban", admin))[0] == 200
    assert (await _get(server, admin, f"{V2}/users/{bob.user_id}"))["shadow_banned"] is True
    before = await server.hs.store.events.get_max_stream_ordering()

    status, body = await _send(server, bob, room_id, "t1")
    assert status == 200 and body["event_id"].startswith("$") and len(body["event_id"]) == 44
    status, state = await server.call(
        "PUT", f"/rooms/{room_id}/state/m.room.topic", bob, json={"topic": "spam"}
    )
    assert status == 200
    status, _ = await server.call(
        "POST", f"/rooms/{room_id}/invite", bob, json={"user_id": carol.user_id}
    )
    assert status == 200
    status, _ = await server.call(
        "PUT",
        f"/rooms/{room_id}/typing/{bob.user_id}",
        bob,
        json={"typing": True, "timeout": 30000},
    )
    assert status == 200
    # Nothing was stored or delivered: no new event, no invite, nobody typing.
    assert await server.hs.store.events.get_max_stream_ordering() == before
    assert await server.hs.store.events.get_event(body["event_id"]) is None
    assert await server.hs.store.events.get_event(state["event_id"]) is None
    assert (await _get(server, admin, f"{V1}/users/{carol.user_id}/memberships"))[
        "memberships"
    ] == {}
    assert bob.user_id not in server.hs.typing.typers(room_id)
    # A room they create is made (theirs alone), its invites answered but never sent.
    status, made = await server.call("POST", "/createRoom", bob, json={"invite": [carol.user_id]})
    assert status == 200
    assert await server.hs.store.state.get_rooms_for_user(carol.user_id, "invite") == []
    assert made["room_id"] in await server.hs.store.state.get_rooms_for_user(bob.user_id)

    assert (await server.call("DELETE", f"{V1}/users/{bob.user_id}/shadow_ban", admin))[0] == 200
    status, body = await _send(server, bob, room_id, "t2")
    assert status == 200
    assert await server.hs.store.events.get_event(body["event_id"]) is not None
    status, _ = await server.call("POST", f"{V1}/users/@bob:elsewhere.example/shadow_ban", admin)
    assert status == 400


async def test_login_as_a_user_and_reset_password(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    bob = await server.register("bob")
    status, body = await server.call("POST", f"{V1}/users/{bob.user_id}/login", admin, json={})
    assert status == 200 and set(body) == {"access_token"}
    puppet = TestUser(bob.user_id, body["access_token"], "")
    assert (await _get(server, puppet, "/account/whoami"))["user_id"] == bob.user_id
    # No new device appears in the user's list.
    assert [d["device_id"] for d in (await _get(server, bob, "/devices"))["devices"]] == [
        bob.device_id
    ]
    # valid_until_ms: expired tokens no longer authenticate.
    now = server.hs.clock()
    status, body = await server.call(
        "POST", f"{V1}/users/{bob.user_id}/login", admin, json={"valid_until_ms": now + 5}
    )
    short = TestUser(bob.user_id, body["access_token"], "")
    for _ in range(10):
        server.hs.clock()
    assert (await server.call("GET", "/account/whoami", short))[0] == 401
    status, body = await server.call(
        "POST", f"{V1}/users/{bob.user_id}/login", admin, json={"valid_until_ms": "soon"}
    )
    assert status == 400
    status, body = await server.call("POST", f"{V1}/users/{admin.user_id}/login", admin, json={})
    assert status == 400
    status, body = await server.call("POST", f"{V1}/users/@ghost:test.example/login", admin)
    assert status == 404
    # The admin logging out everywhere ends the tokens it made.
    assert (await server.call("POST", "/logout/all", admin, json={}))[0] == 200
    assert (await server.call("GET", "/account/whoami", puppet))[0] == 401

    admin = await server.login_device(admin, "ADMIN2")
    status, _ = await server.call(
        "POST",
        f"{V1}/reset_password/{bob.user_id}",
        admin,
        json={"new_password": "a brand new password", "logout_devices": True},
    )
    assert status == 200
    assert (await server.call("GET", "/account/whoami", bob))[0] == 401
    status, login = await server.call(
        "POST",
        "/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "bob"},
            "password": "a brand new password",
        },
    )
    assert status == 200, login
    status, body = await server.call("POST", f"{V1}/reset_password/{bob.user_id}", admin, json={})
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"


async def test_registration_tokens_admin_and_registration(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    path = f"{V1}/registration_tokens"
    status, made = await server.call(
        "POST", f"{path}/new", admin, json={"token": "abcd", "uses_allowed": 1}
    )
    assert status == 200 and made == {
        "token": "abcd",
        "uses_allowed": 1,
        "pending": 0,
        "completed": 0,
        "expiry_time": None,
    }
    status, generated = await server.call("POST", f"{path}/new", admin, json={"length": 10})
    assert status == 200 and set(generated) == TOKEN_KEYS and len(generated["token"]) == 10
    status, body = await server.call("POST", f"{path}/new", admin, json={"token": "abcd"})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, body = await server.call("POST", f"{path}/new", admin, json={"length": 65})
    assert status == 400
    status, body = await server.call("POST", f"{path}/new", admin, json={"expiry_time": 1})
    assert status == 400  # in the past

    # Validity (client API, no token needed).
    valid = "/_matrix/client/v1/register/m.login.registration_token/validity"
    assert (await _get(server, admin, f"{valid}?token=abcd")) == {"valid": True}
    assert (await _get(server, admin, f"{valid}?token=nope")) == {"valid": False}

    # Registration asks for the token first, then m.login.dummy.
    register_body: dict[str, Any] = {"username": "newbie", "password": "a long password"}
    status, challenge = await server.call("POST", "/register", json=register_body)
    assert status == 401
    assert challenge["flows"] == [{"stages": ["m.login.registration_token", "m.login.dummy"]}]
    session = challenge["session"]
    status, body = await server.call(
        "POST",
        "/register",
        json={
            **register_body,
            "auth": {"type": "m.login.registration_token", "token": "nope", "session": session},
        },
    )
    assert status == 401 and body["errcode"] == "M_UNAUTHORIZED"
    status, body = await server.call(
        "POST",
        "/register",
        json={
            **register_body,
            "auth": {"type": "m.login.registration_token", "token": "abcd", "session": session},
        },
    )
    assert status == 401 and body["completed"] == ["m.login.registration_token"]
    assert (await _get(server, admin, f"{path}/abcd"))["pending"] == 1
    assert (await _get(server, admin, f"{valid}?token=abcd")) == {"valid": False}  # used up
    status, body = await server.call(
        "POST",
        "/register",
        json={**register_body, "auth": {"type": "m.login.dummy", "session": session}},
    )
    assert status == 200, body
    assert body["user_id"] == "@newbie:test.example"
    one = await _get(server, admin, f"{path}/abcd")
    assert (one["pending"], one["completed"]) == (0, 1)
    # Without a token, m.login.dummy alone does not register.
    status, body = await server.call(
        "POST", "/register", json={"username": "other", "auth": {"type": "m.login.dummy"}}
    )
    assert status == 401

    listed = await _get(server, admin, f"{path}?valid=false")
    assert [t["token"] for t in listed["registration_tokens"]] == ["abcd"]
    listed = await _get(server, admin, path)
    assert len(listed["registration_tokens"]) == 2
    status, updated = await server.call(
        "PUT", f"{path}/abcd", admin, json={"uses_allowed": None, "expiry_time": None}
    )
    assert status == 200 and updated["uses_allowed"] is None
    assert (await server.call("DELETE", f"{path}/abcd", admin))[0] == 200
    status, body = await server.call("GET", f"{path}/abcd", admin)
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    assert (await server.call("DELETE", f"{path}/abcd", admin))[0] == 404


async def test_suspension_user_redaction_and_lookups(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    bob = await server.register("bob")
    alice = await server.register("alice")
    room_id = await create_room(server, alice, preset="public_chat")
    await join(server, bob, room_id)
    # Not limited by rc_message (3 here) in this test.
    await server.call("POST", f"{V1}/users/{bob.user_id}/override_ratelimit", admin, json={})
    first = (await _send(server, bob, room_id, "one"))[1]["event_id"]
    second = (await _send(server, bob, room_id, "two"))[1]["event_id"]
    alices = (await _send(server, alice, room_id, "hers"))[1]["event_id"]

    status, body = await server.call(
        "PUT", f"{V1}/suspend/{bob.user_id}", admin, json={"suspend": True}
    )
    assert status == 200 and body == {f"user_{bob.user_id}_suspended": True}
    assert (await _get(server, admin, f"{V2}/users/{bob.user_id}"))["suspended"] is True
    status, body = await _send(server, bob, room_id, "three")
    assert status == 403 and body["errcode"] == "M_USER_SUSPENDED"
    status, body = await server.call("POST", "/createRoom", bob, json={})
    assert status == 403 and body["errcode"] == "M_USER_SUSPENDED"
    status, body = await server.call(
        "PUT", f"/profile/{bob.user_id}/displayname", bob, json={"displayname": "B"}
    )
    assert status == 403 and body["errcode"] == "M_USER_SUSPENDED"
    status, body = await server.call(
        "POST", f"/rooms/{room_id}/invite", bob, json={"user_id": admin.user_id}
    )
    assert status == 403 and body["errcode"] == "M_USER_SUSPENDED"
    # Corrective actions stay allowed: redacting their own events (not others').
    status, _ = await server.call("PUT", f"/rooms/{room_id}/redact/{first}/t1", bob, json={})
    assert status == 200
    status, body = await server.call("PUT", f"/rooms/{room_id}/redact/{alices}/t2", bob, json={})
    assert status == 403 and body["errcode"] == "M_USER_SUSPENDED"
    status, body = await server.call(
        "PUT", f"{V1}/suspend/{bob.user_id}", admin, json={"suspend": "yes"}
    )
    assert status == 400
    await server.call("PUT", f"{V1}/suspend/{bob.user_id}", admin, json={"suspend": False})
    assert (await _send(server, bob, room_id, "four"))[0] == 200

    # Redact all of a user's events: answered with an ID, done in the background.
    status, body = await server.call(
        "POST", f"{V1}/user/{bob.user_id}/redact", admin, json={"rooms": [], "reason": "spam"}
    )
    assert status == 200 and set(body) == {"redact_id"}
    await server.hs.user_redactions.wait_idle()
    done = await _get(server, admin, f"{V1}/user/redact_status/{body['redact_id']}")
    assert done == {"status": "complete", "failed_redactions": {}}
    for event_id in (second,):
        event = await server.hs.store.events.get_event(event_id)
        assert event is not None and event.internal.redacted
    hers = await server.hs.store.events.get_event(alices)
    assert hers is not None and not hers.internal.redacted
    status, body = await server.call(
        "POST", f"{V1}/user/{bob.user_id}/redact", admin, json={"rooms": "all"}
    )
    assert status == 400
    status, body = await server.call("GET", f"{V1}/user/redact_status/unknown", admin)
    assert status == 404

    # A master key replaceable without UIA for ten minutes (404 without one).
    path = f"{V1}/users/{bob.user_id}/_allow_cross_signing_replacement_without_uia"
    status, body = await server.call("POST", path, admin, json={})
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    upload = "/keys/device_signing/upload"
    assert (await server.call("POST", upload, bob, json=CrossSigning(bob.user_id).upload_body()))[
        0
    ] == 200
    replacement = CrossSigning(bob.user_id).upload_body()
    assert (await server.call("POST", upload, bob, json=replacement))[0] == 401  # UIA needed
    status, body = await server.call("POST", path, admin, json={})
    assert status == 200 and body["updatable_without_uia_before_ms"] > server.hs.clock()
    assert (await server.call("POST", upload, bob, json=replacement))[0] == 200  # now none

    # Look-ups by third-party or external ID find nobody here; accounts do not expire.
    for path in (f"{V1}/threepid/email/users/a@b.c", f"{V1}/auth_providers/oidc/users/x"):
        status, body = await server.call("GET", path, admin)
        assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    status, body = await server.call(
        "POST", f"{V1}/account_validity/validity", admin, json={"user_id": bob.user_id}
    )
    assert status == 400 and body["errcode"] == "M_UNKNOWN"
