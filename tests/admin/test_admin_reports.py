"""Reports: the client's ``POST /rooms/{r}/report/{e}``, ``/rooms/{r}/report`` and
``/users/{u}/report``, and the admin API's ``/v1/event_reports`` and ``/v1/user_reports``
(Synapse's keys and units: ids integers, ``received_ts`` milliseconds)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from tests.admin.helpers import V1, join
from tests.builders import create_room, generous_config
from tests.harness import TestServer, TestUser

#: Synapse's documented keys of a listed event report (docs/admin_api/event_reports.md).
EVENT_REPORT_KEYS = {
    "id",
    "received_ts",
    "room_id",
    "name",
    "event_id",
    "user_id",
    "reason",
    "score",
    "sender",
    "canonical_alias",
}


_TXN = itertools.count()


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def _say(server: TestServer, user: TestUser, room: str, text: str) -> str:
    txn = f"t{next(_TXN)}"
    status, body = await server.call(
        "PUT",
        f"/rooms/{room}/send/m.room.message/{txn}",
        user,
        json={"msgtype": "m.text", "body": text},
    )
    assert status == 200, body
    return str(body["event_id"])


async def _report_count(server: TestServer) -> int:
    return int(await server.hs.store.db.fetchval("SELECT COUNT(*) FROM event_reports"))


async def test_event_reports_end_to_end(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(
        server, alice, name="Reported", room_alias_name="rep", preset="public_chat"
    )
    await join(server, bob, room)
    first = await _say(server, alice, room, "offensive")
    second = await _say(server, alice, room, "also offensive")
    before = server.hs.clock()
    status, body = await server.call(
        "POST", f"/rooms/{room}/report/{first}", bob, json={"reason": "rude", "score": -100}
    )
    assert (status, body) == (200, {})
    status, _ = await server.call("POST", f"/rooms/{room}/report/{second}", bob, json={})
    assert status == 200

    status, page = await server.call("GET", f"{V1}/event_reports", admin)
    assert status == 200, page
    assert page["total"] == 2 and "next_token" not in page
    newest, oldest = page["event_reports"]  # dir=b by default: the newest first
    assert set(oldest) == EVENT_REPORT_KEYS
    assert oldest["event_id"] == first and newest["event_id"] == second
    assert isinstance(oldest["id"], int) and oldest["received_ts"] >= before  # milliseconds
    assert oldest["received_ts"] < before + 3_600_000
    assert (oldest["reason"], oldest["score"]) == ("rude", -100)
    assert (newest["reason"], newest["score"]) == (None, None)
    assert oldest["user_id"] == bob.user_id and oldest["sender"] == alice.user_id
    assert oldest["name"] == "Reported" and oldest["canonical_alias"] == "#rep:test.example"

    status, page = await server.call(
        "GET", f"{V1}/event_reports", admin, params={"dir": "f", "limit": "1"}
    )
    assert [r["event_id"] for r in page["event_reports"]] == [first]
    assert page["next_token"] == 1 and page["total"] == 2
    for params, expected in [
        ({"user_id": "bob"}, 2),
        ({"user_id": "alice"}, 0),
        ({"room_id": room}, 2),
        ({"event_sender_user_id": alice.user_id}, 2),
        ({"event_sender_user_id": bob.user_id}, 0),
    ]:
        status, page = await server.call("GET", f"{V1}/event_reports", admin, params=params)
        assert status == 200 and page["total"] == expected, (params, page)

    status, one = await server.call("GET", f"{V1}/event_reports/{oldest['id']}", admin)
    assert status == 200, one
    assert set(one) == EVENT_REPORT_KEYS | {"event_json"}
    assert one["event_json"]["type"] == "m.room.message"
    assert one["event_json"]["content"]["body"] == "offensive"
    assert one["event_json"]["sender"] == alice.user_id

    status, _ = await server.call("DELETE", f"{V1}/event_reports/{oldest['id']}", admin)
    assert status == 200
    status, gone = await server.call("GET", f"{V1}/event_reports/{oldest['id']}", admin)
    assert status == 404 and gone["errcode"] == "M_NOT_FOUND"
    status, gone = await server.call("DELETE", f"{V1}/event_reports/{oldest['id']}", admin)
    assert status == 404
    assert await _report_count(server) == 1


#: bodies of ``/report/{eventId}`` refused 400 ``M_BAD_JSON``.
BAD_EVENT_REPORT_BODIES: list[Any] = [
    {"reason": 5},
    {"score": "bad"},
    {"score": True},
    {"score": 1.5},
    {"reason": "x" * 5000},
    [],
]


async def test_room_and_user_reports(server: TestServer) -> None:
    admin = await server.register("root", admin=True)
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(server, alice)
    status, body = await server.call("POST", f"/rooms/{room}/report", bob, json={"reason": "spam"})
    assert (status, body) == (200, {})
    rows = await server.hs.store.db.fetchall("SELECT room_id, user_id, reason FROM room_reports")
    assert [tuple(r) for r in rows] == [(room, bob.user_id, "spam")]
    status, body = await server.call(
        "POST", "/rooms/!unknown:test.example/report", bob, json={"reason": "x"}
    )
    assert status == 404
    status, body = await server.call("POST", f"/rooms/{room}/report", bob, json={})
    assert status == 400 and body["errcode"] == "M_BAD_JSON"

    status, body = await server.call(
        "POST", f"/users/{alice.user_id}/report", bob, json={"reason": "harassment"}
    )
    assert (status, body) == (200, {})
    # Unknown and remote users: accepted, nothing stored (their existence is not revealed).
    for target in ("@ghost:test.example", "@someone:elsewhere.example"):
        status, body = await server.call(
            "POST", f"/users/{target}/report", bob, json={"reason": "x"}
        )
        assert (status, body) == (200, {})
    status, body = await server.call("POST", "/users/not-a-user/report", bob, json={"reason": "x"})
    assert status == 400

    status, page = await server.call("GET", f"{V1}/user_reports", admin)
    assert status == 200 and page["total"] == 1, page
    (report,) = page["user_reports"]
    assert set(report) == {"id", "received_ts", "target_user_id", "user_id", "reason"}
    assert (report["target_user_id"], report["user_id"]) == (alice.user_id, bob.user_id)
    status, one = await server.call("GET", f"{V1}/user_reports/{report['id']}", admin)
    assert status == 200 and one == report
    status, _ = await server.call("DELETE", f"{V1}/user_reports/{report['id']}", admin)
    assert status == 200
    status, _ = await server.call("GET", f"{V1}/user_reports/{report['id']}", admin)
    assert status == 404
    for report_id in ("abc", "-1", "1.5", "99999999999999999999"):
        for kind in ("event_reports", "user_reports"):
            for method in ("GET", "DELETE"):
                status, body = await server.call(method, f"{V1}/{kind}/{report_id}", admin)
                assert status == 400 and body["errcode"] == "M_INVALID_PARAM", body

    # --- only what the reporter can see may be reported ---
    eve = await server.register("eve")
    room = await create_room(server, alice)  # private: eve is not in it
    event = await _say(server, alice, room, "secret")
    other = await create_room(server, alice)
    for path in (
        f"/rooms/{room}/report/{event}",  # not a member
        f"/rooms/{other}/report/{event}",  # the event is not that room's
        f"/rooms/{room}/report/$nope",
        f"/rooms/!unknown:test.example/report/{event}",
        "/rooms/not-a-room/report/x",
    ):
        status, answer = await server.call("POST", path, eve, json={"reason": "x"})
        assert status == 404 and answer["errcode"] == "M_NOT_FOUND", (path, answer)
    status, _ = await server.call("POST", f"/rooms/{room}/report/{event}", json={})
    assert status == 401
    for body in BAD_EVENT_REPORT_BODIES:
        status, answer = await server.call(
            "POST", f"/rooms/{room}/report/{event}", alice, json=body
        )
        assert status == 400 and answer["errcode"] == "M_BAD_JSON", (body, answer)
    assert await _report_count(server) == 0
