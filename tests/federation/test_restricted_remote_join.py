"""Our user joining a restricted room hosted by another server, on both engines: two of our
servers over real HTTPS on loopback (a hosts the space and the restricted room, b's users join
through a), and a hostile resident that refuses to vouch, so b must try the next server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeserver.storage import Store
from tests.federation.cs_client import q
from tests.federation.fake_remote import FakeRemoteServer, ReceivedRequest
from tests.federation.h4_helpers import second_store, two_servers

__all__ = ["second_store"]  # the fixture, used by the tests below

VIA = "join_authorised_via_users_server"


def _refuse(errcode: str) -> Any:
    async def handler(request: ReceivedRequest) -> Any:
        return 400, {"errcode": errcode, "error": "cannot vouch for this join"}

    return handler


async def test_join_restricted_room_through_a_resident_that_can_authorise(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with (
        two_servers(tmp_path, store, second_store) as (a, b),
        FakeRemoteServer(tmp_path) as refuser,
    ):
        make_join = "/_matrix/federation/v1/make_join/{room}/{user}"
        refuser.add_handler("GET", make_join, _refuse("M_UNABLE_TO_GRANT_JOIN"))
        alice = await a.user("alice")
        bob, eve, carol = [await b.user(n) for n in ("bob", "eve", "carol")]
        space = await alice.create_room(preset="public_chat", room_version="10")
        join_rules = {
            "join_rule": "restricted",
            "allow": [{"type": "m.room_membership", "room_id": space}],
        }
        # v12: the room ID names no server, so only the servers given are asked.
        room_id = await alice.create_room(
            preset="private_chat",
            room_version="12",
            initial_state=[{"type": "m.room.join_rules", "state_key": "", "content": join_rules}],
        )
        assert await bob.join(space, via=[a.name]) == space
        assert await carol.join(space, via=[a.name]) == space

        # Before b is in the room: eve is in no allowed room, and a's 403 reaches her.
        status, body = await eve.call(
            "POST", f"/join/{q(room_id)}", {}, [("server_name", a.name)]
        )
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body

        # Only servers that cannot vouch: their error reaches the client.
        status, body = await carol.call(
            "POST", f"/join/{q(room_id)}", {}, [("server_name", refuser.server_name)]
        )
        assert (status, body["errcode"]) == (400, "M_UNABLE_TO_GRANT_JOIN"), body
        assert await b.hs.store.state.get_current_state_event(
            room_id, "m.room.member", carol.user_id
        ) is None

        # The refuser is asked first, says "ask someone else"; a vouches for bob.
        assert await bob.join(room_id, via=[refuser.server_name, a.name]) == room_id
        assert refuser.requests_to("/_matrix/federation/v1/make_join")
        ours = await b.hs.store.state.get_current_state_event(
            room_id, "m.room.member", bob.user_id
        )
        assert ours is not None and ours.membership == "join"
        assert ours.content[VIA] == alice.user_id
        assert {a.name, b.name} <= set(ours.signatures)  # the copy a signed
        theirs = await a.hs.store.state.get_current_state_event(
            room_id, "m.room.member", bob.user_id
        )
        assert theirs is not None and theirs.event_id == ours.event_id
        # b is in the room now: carol's join is local, bob (who may invite) vouches.
        assert await carol.join(room_id) == room_id
        mine = await b.hs.store.state.get_current_state_event(
            room_id, "m.room.member", carol.user_id
        )
        assert mine is not None and mine.content[VIA] == bob.user_id


async def test_join_through_a_resident_when_none_of_ours_may_vouch(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    """b is in the room, but its users are below the invite level: a vouches instead."""
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        carol, dave, eve = [await b.user(n) for n in ("carol", "dave", "eve")]
        space = await alice.create_room(preset="public_chat", room_version="10")
        join_rules = {
            "join_rule": "restricted",
            "allow": [{"type": "m.room_membership", "room_id": space}],
        }
        room_id = await alice.create_room(
            preset="private_chat",
            room_version="10",
            initial_state=[{"type": "m.room.join_rules", "state_key": "", "content": join_rules}],
            power_level_content_override={"invite": 50},
        )
        for user in (carol, dave):
            assert await user.join(space, via=[a.name]) == space
        assert await carol.join(room_id, via=[a.name]) == room_id

        assert await dave.join(room_id) == room_id
        joined = await b.hs.store.state.get_current_state_event(
            room_id, "m.room.member", dave.user_id
        )
        assert joined is not None and joined.membership == "join"
        assert joined.content[VIA] == alice.user_id
        assert {a.name, b.name} <= set(joined.signatures)
        assert carol.user_id in await b.hs.store.state.get_current_members(room_id, "join")

        status, body = await eve.call("POST", f"/join/{q(room_id)}", {})
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
