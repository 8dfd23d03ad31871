"""``rooms.knock`` in /sync, on both engines: a user who knocked sees the room there with
``knock_state.events`` (the stripped pre-join state, then their knock, as Synapse's
``encode_knocked``), on initial and incremental syncs; the room leaves ``knock`` once the knock
is accepted (invite, join) or withdrawn or refused (leave). A knock sent through another server
(kept as the user's out-of-band membership) shows the stripped state that server answered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nio
import pytest

from homeserver.config import HomeserverConfig
from homeserver.storage import Store
from tests.builders import generous_config, make_room
from tests.federation.h4_helpers import second_store, two_servers
from tests.harness import TestServer as Server
from tests.harness import TestUser
from tests.http_client import q
from tests.sync.helpers import sync

__all__ = ["second_store"]  # the fixture, used below

INCLUDE_LEAVE = json.dumps({"room": {"include_leave": True}})


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def post(server: Server, user: TestUser, path: str, **body: Any) -> None:
    status, response = await server.call("POST", path, user, json=body)
    assert status == 200, response


def knock_state(response: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    return response["rooms"]["knock"][room_id]["knock_state"]["events"]


def without_age(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "unsigned"} for e in events]


def check_knock_state(events: list[dict[str, Any]], user_id: str) -> None:
    *stripped, own = events
    types = [e["type"] for e in stripped]
    assert types[0] == "m.room.create" and "m.room.join_rules" in types
    # Pre-join state only: never members, power levels or history.
    assert set(types) <= {
        "m.room.create",
        "m.room.join_rules",
        "m.room.name",
        "m.room.avatar",
        "m.room.canonical_alias",
        "m.room.encryption",
        "m.room.topic",
    }
    assert all(set(e) == {"type", "state_key", "sender", "content"} for e in stripped)
    assert (own["type"], own["state_key"]) == ("m.room.member", user_id)
    assert own["content"]["membership"] == "knock" and "event_id" in own


async def test_knock_section_until_accepted_or_refused(server: Server):
    alice, eve = await server.register("alice"), await server.register("eve")
    accepted = await make_room(server.hs, alice.user_id, version="7", join_rule="knock")
    refused = await make_room(server.hs, alice.user_id, version="7", join_rule="knock")
    withdrawn = await make_room(server.hs, alice.user_id, version="7", join_rule="knock")
    first = await sync(server, eve)
    assert first["rooms"]["knock"] == {}
    for room_id in (accepted, refused, withdrawn):
        await post(server, eve, f"/knock/{room_id}", reason="let me in")

    # Incremental and initial syncs list the three knocks.
    incremental = await sync(server, eve, since=first["next_batch"])
    assert set(incremental["rooms"]["knock"]) == {accepted, refused, withdrawn}
    for room_id in (accepted, refused, withdrawn):
        check_knock_state(knock_state(incremental, room_id), eve.user_id)
        assert room_id not in incremental["rooms"]["join"]
        assert room_id not in incremental["rooms"]["leave"]
    initial = await sync(server, eve)
    assert set(initial["rooms"]["knock"]) == {accepted, refused, withdrawn}
    assert without_age(knock_state(initial, accepted)) == without_age(
        knock_state(incremental, accepted)
    )
    # Nothing new: not sent again.
    quiet = await sync(server, eve, since=incremental["next_batch"], timeout="0")
    assert quiet["rooms"]["knock"] == {}

    # Accepted (invited), refused (kicked), withdrawn (left).
    await post(server, alice, f"/rooms/{accepted}/invite", user_id=eve.user_id)
    await post(server, alice, f"/rooms/{refused}/kick", user_id=eve.user_id)
    await post(server, eve, f"/rooms/{withdrawn}/leave")
    after = await sync(server, eve, since=incremental["next_batch"])
    assert after["rooms"]["knock"] == {}
    assert accepted in after["rooms"]["invite"]
    assert {refused, withdrawn} <= set(after["rooms"]["leave"])
    initial = await sync(server, eve, filter=INCLUDE_LEAVE)
    assert initial["rooms"]["knock"] == {}
    # Joined after the invite: a join, no knock.
    await post(server, eve, f"/rooms/{accepted}/join")
    joined = await sync(server, eve, since=after["next_batch"])
    assert accepted in joined["rooms"]["join"] and joined["rooms"]["knock"] == {}

    # matrix-nio has no knock section, but still parses a response that has one.
    await post(server, eve, f"/knock/{withdrawn}")
    body = await sync(server, eve, since=joined["next_batch"])
    assert withdrawn in body["rooms"]["knock"]
    assert isinstance(nio.SyncResponse.from_dict(body), nio.SyncResponse)


async def test_knock_through_another_server(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        room_id = await alice.create_room(
            preset="private_chat",
            room_version="10",
            name="Knock here",
            initial_state=[
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}
            ],
        )
        status, first = await bob.call("GET", "/sync", None)
        assert status == 200, first
        status, body = await bob.call("POST", f"/knock/{q(room_id)}", {}, [("via", a.name)])
        assert status == 200, body

        status, incremental = await bob.call("GET", "/sync", None, [("since", first["next_batch"])])
        assert status == 200, incremental
        events = knock_state(incremental, room_id)
        check_knock_state(events, bob.user_id)
        assert {
            "type": "m.room.name",
            "state_key": "",
            "sender": alice.user_id,
            "content": {"name": "Knock here"},
        } in events
        status, initial = await bob.call("GET", "/sync", None)
        assert without_age(knock_state(initial, room_id)) == without_age(events)

        # Withdrawn: the room moves to leave.
        status, body = await bob.call("POST", f"/rooms/{q(room_id)}/leave", {})
        assert status == 200, body
        status, after = await bob.call("GET", "/sync", None, [("since", incremental["next_batch"])])
        assert after["rooms"]["knock"] == {} and room_id in after["rooms"]["leave"]
        status, initial = await bob.call("GET", "/sync", None)
        assert initial["rooms"]["knock"] == {}
