"""What moves with an upgrade: members (public, invite-only and restricted rooms), remote
members' invites in the outbox, bans, a space's children, per-user tags / push rules /
m.direct, and the copied state without preset defaults — on both engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from homeserver.crypto.canonical_json import parse_json
from homeserver.events.draft import EventDraft
from tests.builders import create_room, generous_config
from tests.harness import TestServer, TestUser
from tests.rooms.api.helpers import room_events
from tests.rooms.upgrade.helpers import invite_and_join, join, state_of, upgrade


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


async def _memberships(server: TestServer, room_id: str) -> dict[str, str]:
    state = await state_of(server.hs, room_id)
    return {sk: c["membership"] for (t, sk), c in state.items() if t == "m.room.member"}


async def test_invite_only_room_members_are_invited_then_joined(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    dave = await server.register("dave")
    room = await create_room(server, alice, preset="private_chat", room_version="10")
    await invite_and_join(server, room, alice, bob, carol)
    await hs.membership.invite(alice.user_id, room, dave.user_id)  # pending invite
    status, body = await upgrade(server, alice, room, "11")
    assert status == 200, body
    new = body["replacement_room"]
    assert await _memberships(server, new) == {
        alice.user_id: "join",
        bob.user_id: "join",
        carol.user_id: "join",
        dave.user_id: "invite",
    }
    members = [
        (e.sender, e.state_key, e.content["membership"])
        for e in await room_events(hs, new)
        if e.type == "m.room.member" and e.state_key == bob.user_id
    ]
    assert members == [(alice.user_id, bob.user_id, "invite"), (bob.user_id, bob.user_id, "join")]
    # private_chat has guest access: it is copied, as the join rule
    state = await state_of(hs, new)
    assert state[("m.room.guest_access", "")] == {"guest_access": "can_join"}
    assert state[("m.room.join_rules", "")] == {"join_rule": "invite"}
    # the PL event is the last event of the new room
    assert (await room_events(hs, new))[-1].type == "m.room.power_levels"


async def test_restricted_room_keeps_its_allow_list(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    bob = await server.register("bob")
    space = await create_room(
        server, alice, preset="public_chat", room_version="10", creation_content={"type": "m.space"}
    )
    allow = [{"type": "m.room_membership", "room_id": space}]
    room = await create_room(
        server,
        alice,
        preset="private_chat",
        room_version="9",
        initial_state=[
            {"type": "m.room.join_rules", "content": {"join_rule": "restricted", "allow": allow}}
        ],
    )
    await invite_and_join(server, room, alice, bob)
    status, body = await upgrade(server, alice, room, "12")
    assert status == 200, body
    new = body["replacement_room"]
    state = await state_of(hs, new)
    assert state[("m.room.join_rules", "")] == {"join_rule": "restricted", "allow": allow}
    assert (await _memberships(server, new))[bob.user_id] == "join"


async def test_space_children_are_copied(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    space = await create_room(
        server,
        alice,
        preset="public_chat",
        room_version="11",
        creation_content={"type": "m.space"},
        name="Space",
    )
    children = {}
    for name in ("one", "two", "gone"):
        child = await create_room(server, alice, preset="public_chat", name=name)
        content: dict[str, Any] = {"via": ["test.example"]} if name != "gone" else {}
        await hs.sender.send(space, EventDraft("m.space.child", alice.user_id, content, child))
        children[child] = content
    status, body = await upgrade(server, alice, space, "12")
    assert status == 200, body
    new = body["replacement_room"]
    state = await state_of(hs, new)
    assert state[("m.room.create", "")]["type"] == "m.space"
    copied = {sk: c for (t, sk), c in state.items() if t == "m.space.child"}
    # a removed child (empty content) is not carried over
    assert copied == {k: v for k, v in children.items() if v}


async def test_remote_members_invited_through_the_outbox_and_bans_copied(
    server: TestServer,
) -> None:
    hs = server.hs
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    remote = "@zed:remote.example"
    # a remote member's join, as federation would have stored it (built locally for the test)
    await hs.sender.send(room, EventDraft("m.room.member", remote, {"membership": "join"}, remote))
    spammer = await server.register("spammer")
    await join(server, room, spammer)
    await hs.membership.ban(alice.user_id, room, spammer.user_id, reason="spam")
    status, body = await upgrade(server, alice, room, "11")
    assert status == 200, body
    new = body["replacement_room"]
    members = await _memberships(server, new)
    assert members[remote] == "invite"
    assert members[spammer.user_id] == "ban"
    state = await state_of(hs, new)
    assert state[("m.room.member", spammer.user_id)] == {"membership": "ban", "reason": "spam"}
    rows = await hs.store.db.fetchall("SELECT destination, payload FROM federation_outbox")
    invite_id = await hs.store.state.get_current_state_event_id(new, "m.room.member", remote)
    queued = [(d, parse_json(p)) for d, p in rows]
    assert [(d, p) for d, p in queued if p["kind"] == "invite"] == [
        (
            "remote.example",
            {"kind": "invite", "room_id": new, "event_id": invite_id, "room_version": "11"},
        )
    ]
    # the old room's tombstone reaches the remote member's server too (as a PDU, before it)
    tombstone_id = await hs.store.state.get_current_state_event_id(room, "m.room.tombstone", "")
    kinds = [(d, p["kind"], p["event_id"]) for d, p in queued]
    tombstone_at = kinds.index(("remote.example", "pdu", tombstone_id))
    assert tombstone_at < kinds.index(("remote.example", "invite", invite_id))


async def test_copied_state_exactly_no_defaults(server: TestServer) -> None:
    """Encryption, server ACL, avatar, pinned events come along; nothing else is added."""
    hs = server.hs
    alice = await server.register("alice")
    extra_state = [
        {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
        {"type": "m.room.server_acl", "content": {"allow": ["*"], "deny": ["bad.example"]}},
        {"type": "m.room.avatar", "content": {"url": "mxc://test.example/a"}},
        {"type": "m.room.pinned_events", "content": {"pinned": ["$x"]}},
        {"type": "org.example.custom", "content": {"x": 1}},
    ]
    room = await create_room(
        server, alice, preset="public_chat", room_version="11", initial_state=extra_state
    )
    status, body = await upgrade(server, alice, room, "12")
    assert status == 200, body
    state = await state_of(hs, body["replacement_room"])
    old_state = await state_of(hs, room)
    for entry in extra_state[:4]:
        key = (entry["type"], "")
        assert state[key] == old_state[key] == entry["content"]
    assert ("org.example.custom", "") not in state
    assert ("m.room.guest_access", "") not in state


async def _member_with_room_data(
    server: TestServer, localpart: str
) -> tuple[TestUser, TestUser, str]:
    """Alice's room with ``localpart`` joined, who has a tag on it, an ``m.direct`` entry naming
    it (with alice) and a room push rule for it: (alice, the member, the room)."""
    alice = await server.register("alice")
    user = await server.register(localpart)
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    await join(server, room, user)
    data = server.hs.store.account_data
    await data.set_account_data(user.user_id, room, "m.tag", {"tags": {"u.work": {}}})
    await data.set_account_data(user.user_id, "", "m.direct", {alice.user_id: [room]})
    status, _ = await server.call(
        "PUT", f"/pushrules/global/room/{room}", user, json={"actions": ["dont_notify"]}
    )
    assert status == 200
    return alice, user, room


async def test_per_user_data_is_copied(server: TestServer) -> None:
    hs = server.hs
    alice, bob, room = await _member_with_room_data(server, "bob")
    status, body = await upgrade(server, alice, room, "11")
    assert status == 200, body
    new = body["replacement_room"]
    tags = await hs.store.account_data.get_account_data(bob.user_id, new, "m.tag")
    assert tags == {"tags": {"u.work": {}}}
    direct = await hs.store.account_data.get_account_data(bob.user_id, "", "m.direct")
    assert direct == {alice.user_id: [room, new]}
    rules = {r.rule_id for r in await hs.store.push_rules.get_rules(bob.user_id)}
    assert {room, new} <= rules


async def test_per_user_data_of_a_former_member_stays(server: TestServer) -> None:
    """Only the members' data moves: one who left keeps tags, m.direct and push rule as
    they were, though they all name the old room."""
    hs = server.hs
    alice, carol, room = await _member_with_room_data(server, "carol")
    status, _ = await server.call("POST", f"/rooms/{room}/leave", carol, json={})
    assert status == 200
    status, body = await upgrade(server, alice, room, "11")
    assert status == 200, body
    new = body["replacement_room"]
    assert await hs.store.account_data.get_account_data(carol.user_id, new, "m.tag") is None
    direct = await hs.store.account_data.get_account_data(carol.user_id, "", "m.direct")
    assert direct == {alice.user_id: [room]}
    rules = {r.rule_id for r in await hs.store.push_rules.get_rules(carol.user_id)}
    assert room in rules and new not in rules


class TestWithoutMemberMoves:
    @pytest.fixture
    def hs_config(self, tmp_path: Path) -> HomeserverConfig:
        return generous_config(
            tmp_path,
            room_upgrades={"auto_join_local_members": False, "invite_remote_members": False},
        )

    async def test_only_the_upgrader_moves(self, server: TestServer) -> None:
        hs = server.hs
        alice = await server.register("alice")
        bob = await server.register("bob")
        room = await create_room(server, alice, preset="public_chat", room_version="10")
        await join(server, room, bob)
        remote = "@zed:remote.example"
        await hs.sender.send(
            room, EventDraft("m.room.member", remote, {"membership": "join"}, remote)
        )
        status, body = await upgrade(server, alice, room, "11")
        assert status == 200
        assert await _memberships(server, body["replacement_room"]) == {alice.user_id: "join"}
        # no invite queued (the old room's events still go to its remote member's server)
        payloads = await hs.store.db.fetchall("SELECT payload FROM federation_outbox")
        assert [p for (p,) in payloads if parse_json(p)["kind"] == "invite"] == []


async def test_old_room_restriction_is_best_effort(server: TestServer) -> None:
    """An upgrader allowed to send the tombstone but not power levels still upgrades; the old
    room's power levels stay as they were (as Synapse: the restriction is best effort)."""
    hs = server.hs
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(
        server,
        alice,
        preset="public_chat",
        room_version="10",
        power_level_content_override={
            "users": {alice.user_id: 100, bob.user_id: 50},
            "events": {"m.room.tombstone": 50, "m.room.power_levels": 100},
        },
    )
    await join(server, room, bob)
    old_pl = (await state_of(hs, room))[("m.room.power_levels", "")]
    status, body = await upgrade(server, bob, room, "11")
    assert status == 200, body
    after = await state_of(hs, room)
    assert after[("m.room.tombstone", "")]["replacement_room"] == body["replacement_room"]
    assert after[("m.room.power_levels", "")] == old_pl
    new_state = await state_of(hs, body["replacement_room"])
    assert new_state[("m.room.power_levels", "")]["users"] == old_pl["users"]
    assert new_state[("m.room.member", alice.user_id)]["membership"] == "join"
