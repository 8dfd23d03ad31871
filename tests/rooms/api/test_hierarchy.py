"""Spaces and previews on both engines: ``GET /_matrix/client/v1/rooms/{roomId}/hierarchy``
(order, visibility per user, ``max_depth``, ``suggested_only``, pagination and its token),
``GET /_matrix/federation/v1/hierarchy/{roomId}`` (what another server may see), a space
holding rooms of another server (asked over federation, the answer checked), and
``/room_summary`` with the unstable im.nheko.summary paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.app import Homeserver
from homeserver.config import HomeserverConfig
from homeserver.events.draft import EventDraft
from homeserver.federation.client import FederationHttpError
from homeserver.federation.remote_hierarchy import parse_answer
from tests.builders import generous_config, invite, join, make_room
from tests.federation.received_helpers import Remote, signed_request
from tests.federation.test_invites import _invite_path, _remote_room
from tests.harness import TestServer as Server
from tests.harness import TestUser as User

V1 = "/_matrix/client/v1"
FED = "/_matrix/federation/v1/hierarchy/"
SPACE = "m.space"
FAR = "!far:elsewhere.example"
FAR_CHILD = "!farchild:elsewhere.example"
HIDDEN = "!hidden:elsewhere.example"


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def link(hs: Homeserver, space: str, child: str, sender: str, **content: Any) -> None:
    content = {"via": ["test.example"], **content}
    await hs.sender.send(space, EventDraft("m.space.child", sender, content, child))


async def hierarchy(
    server: Server, user: User | None, room_id: str, **params: str
) -> tuple[int, Any]:
    return await server.call("GET", f"{V1}/rooms/{room_id}/hierarchy", user, params=params)


def ids(body: dict[str, Any]) -> list[str]:
    return [room["room_id"] for room in body["rooms"]]


async def walk_all(server: Server, user: User, room_id: str, **params: str) -> list[list[str]]:
    """Every page of the walk, following ``next_batch``."""
    pages: list[list[str]] = []
    token = None
    while True:
        extra = dict(params, **({"from": token} if token else {}))
        status, body = await hierarchy(server, user, room_id, **extra)
        assert status == 200, body
        pages.append(ids(body))
        token = body.get("next_batch")
        if token is None:
            return pages


async def space_tree(server: Server, alice: User) -> dict[str, str]:
    """S (public space): P "a" (invite-only), A "b" (public), T "c" (public sub-space,
    suggested, holding B, suggested), R (restricted to S, no order), a link without ``via``."""
    hs = server.hs
    me = alice.user_id
    rooms = {
        "S": await make_room(hs, me, name="S", room_type=SPACE),
        "P": await make_room(hs, me, name="P", join_rule="invite"),
        "A": await make_room(hs, me, name="A"),
        "T": await make_room(hs, me, name="T", room_type=SPACE),
        "B": await make_room(hs, me, name="B"),
        "X": await make_room(hs, me, name="X"),
    }
    allow = [{"type": "m.room_membership", "room_id": rooms["S"]}]
    rooms["R"] = await make_room(hs, me, name="R", join_rule="restricted", allow=allow)
    await link(hs, rooms["S"], rooms["A"], me, order="b")
    await link(hs, rooms["S"], rooms["P"], me, order="a")
    await link(hs, rooms["S"], rooms["T"], me, order="c", suggested=True)
    await link(hs, rooms["S"], rooms["R"], me)
    await link(hs, rooms["S"], rooms["X"], me, via=[])
    await link(hs, rooms["T"], rooms["B"], me, suggested=True)
    return rooms


async def test_hierarchy_walk_visibility_and_pagination(server: Server) -> None:
    alice, bob = await server.register("alice"), await server.register("bob")
    r = await space_tree(server, alice)
    order = ["S", "P", "A", "T", "B", "R"]

    status, body = await hierarchy(server, alice, r["S"])
    assert status == 200, body
    assert ids(body) == [r[k] for k in order] and "next_batch" not in body
    root = body["rooms"][0]
    links = [(c["state_key"], c["content"].get("order")) for c in root["children_state"]]
    # Every live link, in the spec's order (the one without via is no link).
    assert links == [(r["P"], "a"), (r["A"], "b"), (r["T"], "c"), (r["R"], None)]
    assert set(root["children_state"][0]) == {
        "type",
        "state_key",
        "content",
        "sender",
        "origin_server_ts",
    }
    assert root["room_type"] == SPACE and root["name"] == "S"
    assert root["num_joined_members"] == 1 and root["join_rule"] == "public"
    assert root["world_readable"] is False and root["guest_can_join"] is False
    a_entry = body["rooms"][2]
    assert a_entry["children_state"] == [] and "allowed_room_ids" not in body["rooms"][5]

    # Bob is in nothing: not the invite-only room, not the room restricted to S.
    status, body = await hierarchy(server, bob, r["S"])
    assert ids(body) == [r[k] for k in ("S", "A", "T", "B")]
    await join(server.hs, r["S"], bob.user_id)
    status, body = await hierarchy(server, bob, r["S"])
    assert ids(body) == [r[k] for k in ("S", "A", "T", "B", "R")]

    status, body = await hierarchy(server, alice, r["S"], max_depth="1")
    assert ids(body) == [r[k] for k in ("S", "P", "A", "T", "R")]
    status, body = await hierarchy(server, alice, r["S"], max_depth="0")
    assert ids(body) == [r["S"]]
    status, body = await hierarchy(server, alice, r["S"], suggested_only="true")
    assert ids(body) == [r[k] for k in ("S", "T", "B")]
    assert [c["state_key"] for c in body["rooms"][0]["children_state"]] == [r["T"]]

    pages = await walk_all(server, alice, r["S"], limit="2")
    assert pages == [[r["S"], r["P"]], [r["A"], r["T"]], [r["B"], r["R"]]]

    # The token is bound to its user, root and query; a forged one is refused.
    status, body = await hierarchy(server, alice, r["S"], limit="2")
    token = body["next_batch"]
    for user, room, extra in (
        (bob, r["S"], {}),
        (alice, r["T"], {}),
        (alice, r["S"], {"max_depth": "3"}),
        (alice, r["S"], {"suggested_only": "true"}),
    ):
        status, refused = await hierarchy(server, user, room, **{"from": token, **extra})
        assert (status, refused["errcode"]) == (400, "M_INVALID_PARAM"), (room, extra)
    status, refused = await hierarchy(server, alice, r["S"], **{"from": "forged"})
    assert (status, refused["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await hierarchy(server, alice, r["S"], **{"from": token, "limit": "10"})
    assert ids(body) == [r[k] for k in ("A", "T", "B", "R")]


async def test_hierarchy_refusals(server: Server) -> None:
    alice, bob = await server.register("alice"), await server.register("bob")
    private = await make_room(server.hs, alice.user_id, join_rule="invite", room_type=SPACE)
    public = await make_room(server.hs, alice.user_id, room_type=SPACE)
    for room in (private, "!unknown:test.example"):
        status, body = await hierarchy(server, bob, room)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), room
    status, body = await hierarchy(server, None, public)
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    for params in (
        {"limit": "0"},
        {"limit": "x"},
        {"max_depth": "-1"},
        {"max_depth": "1.5"},
        {"suggested_only": "yes"},
    ):
        status, body = await hierarchy(server, bob, public, **params)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), params
    status, body = await hierarchy(server, bob, "not-a-room")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    await invite(server.hs, private, alice.user_id, bob.user_id)
    status, body = await hierarchy(server, bob, private)
    assert (status, ids(body)) == (200, [private])


async def test_federation_hierarchy_serves_what_the_server_may_see(server: Server) -> None:
    hs = server.hs
    alice = await server.register("alice")
    r = await space_tree(server, alice)
    await link(hs, r["S"], "!elsewhere:far.example", alice.user_id, via=["far.example"])
    remote = Remote()
    await remote.seed_key(hs)

    status, body = await signed_request(server, remote, "GET", FED + quote(r["S"]))
    assert status == 200, body
    assert body["room"]["room_id"] == r["S"] and body["room"]["name"] == "S"
    linked = [c["state_key"] for c in body["room"]["children_state"]]
    assert linked == [r["P"], r["A"], r["T"], r["R"], "!elsewhere:far.example"]
    # Children we are in, without their own links; a room we are not in is left out.
    assert [c["room_id"] for c in body["children"]] == [r["A"], r["T"]]
    assert all("children_state" not in c for c in body["children"])
    assert body["inaccessible_children"] == [r["P"], r["R"]]

    # Once one of its users is in S, the room restricted to S is visible, with its allow list.
    await remote.join(hs, r["S"])
    status, body = await signed_request(server, remote, "GET", FED + quote(r["S"]))
    assert [c["room_id"] for c in body["children"]] == [r["A"], r["T"], r["R"]]
    assert body["children"][2]["allowed_room_ids"] == [r["S"]]
    assert body["inaccessible_children"] == [r["P"]]
    status, body = await signed_request(
        server, remote, "GET", FED + quote(r["S"]) + "?suggested_only=true"
    )
    assert [c["room_id"] for c in body["children"]] == [r["T"]]

    for room in (r["P"], "!unknown:test.example"):
        status, body = await signed_request(server, remote, "GET", FED + quote(room))
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), room
    status, body = await signed_request(server, remote, "GET", FED + "junk")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await signed_request(
        server, remote, "GET", FED + quote(r["S"]) + "?suggested_only=1"
    )
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, _ = await server.call("GET", FED + quote(r["S"]))
    assert status == 401


class StubFederation:
    """Stands in for the federation client: canned ``/hierarchy`` answers per room."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str, Any]] = []

    async def get_json(self, destination: str, path: str, query: Any = None, **_: Any) -> Any:
        self.asked.append((destination, path, query))
        answer = self.answers.get(path.removeprefix(FED).replace("%21", "!").replace("%3A", ":"))
        if answer is None or destination == "down.example":
            raise FederationHttpError(404, "M_NOT_FOUND", "no", None)
        return answer


def far_answers() -> dict[str, Any]:
    far_link = {
        "type": "m.space.child",
        "state_key": FAR_CHILD,
        "content": {"via": ["elsewhere.example"]},
        "sender": "@x:elsewhere.example",
        "origin_server_ts": 5,
    }
    return {
        FAR: {
            "room": {
                "room_id": FAR,
                "name": "Far",
                "join_rule": "public",
                "room_type": SPACE,
                "num_joined_members": 3,
                "evil": {"html": "<script>"},
                "world_readable": "yes",
                "children_state": [far_link, {"type": "m.room.name"}, "junk"],
            },
            "children": [{"room_id": FAR_CHILD, "name": "FC", "join_rule": "public"}, 7],
            "inaccessible_children": [],
        },
        HIDDEN: {"room": {"room_id": HIDDEN, "join_rule": "invite"}, "children": []},
    }


async def test_remote_rooms_in_a_space(server: Server) -> None:
    hs = server.hs
    alice, bob = await server.register("alice"), await server.register("bob")
    space = await make_room(hs, alice.user_id, room_type=SPACE)
    await link(hs, space, FAR, alice.user_id, via=["down.example", "elsewhere.example"])
    await link(hs, space, HIDDEN, alice.user_id, via=["elsewhere.example"])
    stub = StubFederation(far_answers())
    hs.remote_hierarchy.client = stub  # type: ignore[assignment]

    status, body = await hierarchy(server, bob, space)
    assert status == 200, body
    assert ids(body) == [space, FAR, FAR_CHILD]
    far = body["rooms"][1]
    assert far["name"] == "Far" and "evil" not in far and far["world_readable"] is False
    assert [c["state_key"] for c in far["children_state"]] == [FAR_CHILD]
    assert body["rooms"][2]["name"] == "FC"
    # The next server after one that failed; the child came with its parent's answer.
    assert [(d, p) for d, p, _ in stub.asked] == [
        ("down.example", FED + quote(FAR, safe="")),
        ("elsewhere.example", FED + quote(FAR, safe="")),
        ("elsewhere.example", FED + quote(HIDDEN, safe="")),
    ]

    status, summary = await server.call(
        "GET", f"{V1}/room_summary/{FAR}", bob, params={"via": "elsewhere.example"}
    )
    assert status == 200, summary
    assert summary["membership"] == "leave" and summary["name"] == "Far"
    assert "children_state" not in summary and "evil" not in summary
    status, summary = await server.call(
        "GET", f"{V1}/room_summary/{HIDDEN}", bob, params={"via": "elsewhere.example"}
    )
    assert (status, summary["errcode"]) == (404, "M_NOT_FOUND")
    status, summary = await server.call("GET", f"{V1}/room_summary/{FAR}", bob)
    assert (status, summary["errcode"]) == (400, "M_MISSING_PARAM")


async def test_room_summary(server: Server) -> None:
    hs = server.hs
    alice, bob = await server.register("alice"), await server.register("bob")
    public = await make_room(hs, alice.user_id, name="Lobby", version="11")
    await hs.sender.send(
        public,
        EventDraft("m.room.encryption", alice.user_id, {"algorithm": "m.megolm.v1.aes-sha2"}, ""),
    )
    status, _ = await server.call(
        "PUT", "/directory/room/%23lobby%3Atest.example", alice, json={"room_id": public}
    )
    assert status == 200
    private = await make_room(hs, alice.user_id, name="Secret", join_rule="invite")

    status, body = await server.call("GET", f"{V1}/room_summary/{public}", bob)
    assert status == 200, body
    assert body == {
        "room_id": public,
        "name": "Lobby",
        "num_joined_members": 1,
        "world_readable": False,
        "guest_can_join": False,
        "join_rule": "public",
        "room_version": "11",
        "encryption": "m.megolm.v1.aes-sha2",
        "membership": "leave",
    }
    for path in (
        f"{V1}/room_summary/%23lobby%3Atest.example",
        f"/_matrix/client/unstable/im.nheko.summary/summary/{public}",
        f"/_matrix/client/unstable/im.nheko.summary/rooms/{public}/summary",
    ):
        status, same = await server.call("GET", path, bob)
        assert (status, same) == (200, body), path
    status, anonymous = await server.call("GET", f"{V1}/room_summary/{public}")
    assert status == 200 and "membership" not in anonymous

    for user in (None, bob):
        status, refused = await server.call("GET", f"{V1}/room_summary/{private}", user)
        assert (status, refused["errcode"]) == (404, "M_NOT_FOUND")
    status, mine = await server.call("GET", f"{V1}/room_summary/{private}", alice)
    assert (status, mine["membership"]) == (200, "join")
    await invite(hs, private, alice.user_id, bob.user_id)
    status, invited = await server.call("GET", f"{V1}/room_summary/{private}", bob)
    assert (status, invited["membership"], invited["join_rule"]) == (200, "invite", "invite")

    for room in ("nonsense", "%23bad"):
        status, refused = await server.call("GET", f"{V1}/room_summary/{room}", bob)
        assert (status, refused["errcode"]) == (400, "M_INVALID_PARAM"), room
    status, refused = await server.call("GET", f"{V1}/room_summary/%23nothing%3Atest.example", bob)
    assert (status, refused["errcode"]) == (404, "M_NOT_FOUND")
    status, refused = await server.call(
        "GET", f"{V1}/room_summary/{public}", headers={"Authorization": "Bearer wrong"}
    )
    assert (status, refused["errcode"]) == (401, "M_UNKNOWN_TOKEN")


def test_parse_answer_refuses_a_mismatched_or_malformed_answer() -> None:
    from homeserver.federation.remote_hierarchy import InvalidAnswer

    good = far_answers()[FAR]
    assert parse_answer(FAR, good).children.keys() == {FAR_CHILD}
    for bad in (
        [],
        {"room": {"room_id": HIDDEN}},
        {"room": {"room_id": FAR, "children_state": {}}},
        {"room": {"room_id": FAR}, "children": {}},
        {"room": {"room_id": FAR}, "inaccessible_children": "x"},
        {"room": "x"},
    ):
        with pytest.raises(InvalidAnswer):
            parse_answer(FAR, bad)


async def test_invited_to_a_remote_space(server: Server) -> None:
    """A space we have no state of but the user is invited to is previewed from the
    inviter's server (Synapse allows the root for a pending invite)."""
    bob, carol = await server.register("bob"), await server.register("carol")
    remote = Remote()
    await remote.seed_key(server.hs)
    state, invite = _remote_room(remote, "10", bob.user_id)
    body = {"room_version": "10", "event": invite, "invite_room_state": state}
    status, answer = await signed_request(server, remote, "PUT", _invite_path("10", invite), body)
    assert status == 200, answer
    room_id = invite["room_id"]
    answers = far_answers()
    answers[room_id] = {
        "room": {
            "room_id": room_id,
            "join_rule": "invite",
            "room_type": SPACE,
            "children_state": [
                {"type": "m.space.child", "state_key": FAR, "content": {"via": [remote.name]}}
            ],
        },
        "children": [],
    }
    stub = StubFederation(answers)
    server.hs.remote_hierarchy.client = stub  # type: ignore[assignment]

    status, body = await hierarchy(server, bob, room_id)
    assert status == 200, body
    assert ids(body) == [room_id, FAR, FAR_CHILD]
    assert stub.asked[0][0] == remote.name
    status, refused = await hierarchy(server, carol, room_id)
    assert (status, refused["errcode"]) == (403, "M_FORBIDDEN")
    status, summary = await server.call(
        "GET", f"{V1}/room_summary/{room_id}", bob, params={"via": remote.name}
    )
    assert (status, summary["membership"]) == (200, "invite")
    status, summary = await server.call(
        "GET", f"{V1}/room_summary/{room_id}", carol, params={"via": remote.name}
    )
    assert (status, summary["errcode"]) == (404, "M_NOT_FOUND")
