"""Our user joining a room hosted by another server (make_join / v2/send_join as the joining
server), on both engines: two of our homeservers federating over real HTTPS on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from homeserver.crypto.signing import generate_signing_key, get_verify_key, key_id
from homeserver.events.builder import Signer
from homeserver.events.hashes import check_content_hash
from homeserver.events.signing import verify_event_signature
from homeserver.events.template import BadTemplate, check_template, event_from_template
from homeserver.room_versions import get_room_version
from homeserver.storage import Store
from tests.federation.cs_client import q
from tests.federation.h4_helpers import second_store, two_servers

__all__ = ["second_store"]  # the fixture, used by the tests below


async def test_join_remote_room_by_alias_then_talk(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        room_id = await alice.create_room(
            preset="public_chat", room_alias_name="pub", name="The pub"
        )
        alias = f"#pub:{a.name}"
        assert await bob.join(alias) == room_id

        # Our copy of the room: state, and the join in bob's /sync.
        members = await b.hs.store.state.get_current_members(room_id, "join")
        assert members == sorted([alice.user_id, bob.user_id])
        sync = await bob.sync_once(timeout_ms=0)
        joined = sync["rooms"]["join"][room_id]
        state_types = {e["type"] for e in joined["state"]["events"]}
        timeline = joined["timeline"]["events"]
        assert {"m.room.create", "m.room.power_levels", "m.room.name"} <= state_types | {
            e["type"] for e in timeline
        }
        assert any(e["type"] == "m.room.member" and e["state_key"] == bob.user_id for e in timeline)
        # The resident took the join.
        assert bob.user_id in await a.hs.store.state.get_current_members(room_id, "join")

        await alice.send_message(room_id, "hello from a")
        await bob.wait_for_message(room_id, "hello from a", timeout=60)
        await bob.send_message(room_id, "hello from b")
        await alice.wait_for_message(room_id, "hello from b", timeout=60)


async def test_join_by_room_id_with_server_name_and_refusals(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        public = await alice.create_room(preset="public_chat", room_version="10")
        # A v1-11 room ID names its server, so even without server_name it can be found …
        assert await bob.join(public) == public
        # … and with server_name too (a second room, v12: the ID names no server).
        other = await alice.create_room(preset="public_chat")
        status, body = await bob.call("POST", f"/join/{q(other)}", {})
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")  # no server to ask
        assert await bob.join(other, via=[a.name]) == other
        assert bob.user_id in await a.hs.store.state.get_current_members(other, "join")

        # An invite-only room refuses us: the resident's 403 reaches the client.
        private = await alice.create_room(preset="private_chat")
        status, body = await bob.call("POST", f"/join/{q(private)}", {}, [("server_name", a.name)])
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
        assert await b.hs.store.rooms.get_room(private) is None

        # An alias the remote server does not know.
        status, body = await bob.call("POST", f"/join/{q('#nothing:' + a.name)}", {})
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")


# --- the template checks (pure) ---------------------------------------------------------------

ROOM, USER = "!r:remote.example", "@bob:test.example"
GOOD = {
    "type": "m.room.member",
    "room_id": ROOM,
    "sender": USER,
    "state_key": USER,
    "content": {"membership": "join"},
    "depth": 3,
    "origin_server_ts": 5,
    "prev_events": ["$p"],
    "auth_events": ["$a"],
}


@pytest.mark.parametrize(
    ("change", "ok"),
    [
        ({}, True),
        ({"type": "m.room.message"}, False),
        ({"room_id": "!other:remote.example"}, False),
        ({"sender": "@eve:test.example"}, False),
        ({"state_key": "@eve:test.example"}, False),
        ({"content": {"membership": "leave"}}, False),
        ({"content": "join"}, False),
    ],
)
def test_check_template(change: dict, ok: bool) -> None:
    template = {**GOOD, **change}
    version = get_room_version("10")
    if ok:
        assert check_template(
            template, room_id=ROOM, user_id=USER, membership="join", room_version=version
        )
    else:
        with pytest.raises(BadTemplate):
            check_template(
                template, room_id=ROOM, user_id=USER, membership="join", room_version=version
            )
    with pytest.raises(BadTemplate):
        check_template(["x"], room_id=ROOM, user_id=USER, membership="join", room_version=version)


def test_event_from_template_is_ours() -> None:
    version = get_room_version("10")
    key = generate_signing_key("k")
    template = {**GOOD, "hashes": {"sha256": "x"}, "signatures": {"remote.example": {}}}
    event = event_from_template(
        version,
        Signer("test.example", key),
        template,
        content={"displayname": "Bob", "membership": "leave"},
        origin_server_ts=99,
    )
    # Our timestamp and profile; the membership stays the template's; only our signature.
    assert event.content == {"membership": "join", "displayname": "Bob"}
    assert event.origin_server_ts == 99 and event.depth == 3
    assert set(event.signatures) == {"test.example"}
    assert check_content_hash(event.pdu)
    verify = get_verify_key(key)
    verify_event_signature(version, event.pdu, "test.example", key_id(verify), verify)


async def test_leave_then_rejoin_remote_room(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    """Our only member leaves a room hosted elsewhere and joins again later: the second join
    goes through the resident again (we are no longer in the room) and talk resumes both ways;
    our copy does not keep building on the events from before the leave."""
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        room_id = await alice.create_room(preset="public_chat", room_version="10")
        assert await bob.join(room_id) == room_id
        await bob.send_message(room_id, "first visit")
        await alice.wait_for_message(room_id, "first visit", timeout=60)

        status, _ = await bob.call("POST", f"/rooms/{q(room_id)}/leave", {})
        assert status == 200
        for _ in range(200):
            if bob.user_id not in await a.hs.store.state.get_current_members(room_id, "join"):
                break
            await asyncio.sleep(0.05)
        assert bob.user_id not in await a.hs.store.state.get_current_members(room_id, "join")
        # While we are out, the room moves on without us.
        await alice.send_message(room_id, "while you were out")

        assert await bob.join(room_id) == room_id
        assert bob.user_id in await a.hs.store.state.get_current_members(room_id, "join")
        extremities = await b.hs.store.events.get_forward_extremities(room_id)
        assert len(extremities.event_ids) == 1  # only our new join
        await bob.send_message(room_id, "second visit")
        await alice.wait_for_message(room_id, "second visit", timeout=60)
        await alice.send_message(room_id, "welcome back")
        await bob.wait_for_message(room_id, "welcome back", timeout=60)
