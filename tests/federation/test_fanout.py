"""Which servers get a local event (homeserver/streams/fanout.py): the pure rule, table
driven, and the outbox rows every local write path leaves, on both engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from homeserver.crypto.canonical_json import parse_json
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.room_versions import get_room_version
from homeserver.streams.fanout import destinations_for, enqueue_event_txn
from tests.builders import create_room, generous_config
from tests.harness import SERVER_NAME
from tests.harness import TestServer as Server
from tests.rooms.upgrade.helpers import upgrade

OURS = SERVER_NAME
V10 = get_room_version("10")


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return generous_config(tmp_path)


def member_event(sender: str, target: str, membership: str) -> Event:
    pdu = {
        "type": "m.room.member",
        "room_id": "!r:test.example",
        "sender": sender,
        "state_key": target,
        "content": {"membership": membership},
        "origin_server_ts": 1,
    }
    return Event(pdu, V10, event_id="$e")


def message_event(sender: str) -> Event:
    pdu = {"type": "m.room.message", "room_id": "!r:test.example", "sender": sender}
    return Event({**pdu, "content": {}, "origin_server_ts": 1}, V10, event_id="$m")


ALICE = f"@alice:{OURS}"
# (event, joined servers after it, the target's membership before it, exclude)
#   → (PDU destinations, v2/invite destination)
CASES: list[tuple[str, Event, set[str], str | None, tuple[str, ...], list[str], str | None]] = [
    ("message, local room", message_event(ALICE), set(), None, (), [], None),
    ("message", message_event(ALICE), {"a.org", "b.org"}, None, (), ["a.org", "b.org"], None),
    ("never to ourselves", message_event(ALICE), {OURS, "a.org"}, None, (), ["a.org"], None),
    ("exclude", message_event(ALICE), {"a.org", "b.org"}, None, ("a.org",), ["b.org"], None),
    (
        "kick reaches the leaver's server",
        member_event(ALICE, "@bob:b.org", "leave"),
        {"a.org"},
        "join",
        (),
        ["a.org", "b.org"],
        None,
    ),
    (
        "ban of a joined remote user reaches its server",
        member_event(ALICE, "@bob:b.org", "ban"),
        set(),
        "join",
        (),
        ["b.org"],
        None,
    ),
    (
        "pre-emptive ban of a never-joined remote user does not",
        member_event(ALICE, "@bob:b.org", "ban"),
        {"a.org"},
        None,
        (),
        ["a.org"],
        None,
    ),
    (
        "ban of a user who had left does not",
        member_event(ALICE, "@bob:b.org", "ban"),
        set(),
        "leave",
        (),
        [],
        None,
    ),
    (
        "unban does not",
        member_event(ALICE, "@bob:b.org", "leave"),
        set(),
        "ban",
        (),
        [],
        None,
    ),
    (
        "a rescinded invite reaches the invitee's server",
        member_event(ALICE, "@bob:b.org", "leave"),
        {"a.org"},
        "invite",
        (),
        ["a.org", "b.org"],
        None,
    ),
    (
        "remote join (resident), origin excluded",
        member_event("@bob:b.org", "@bob:b.org", "join"),
        {"a.org", "b.org"},
        None,
        ("b.org",),
        ["a.org"],
        None,
    ),
    (
        "invite to a server not in the room goes by v2/invite only",
        member_event(ALICE, "@carol:c.org", "invite"),
        {"a.org"},
        None,
        (),
        ["a.org"],
        "c.org",
    ),
    (
        "invite to a server in the room: v2/invite and the PDU",
        member_event(ALICE, "@carol:a.org", "invite"),
        {"a.org"},
        None,
        (),
        ["a.org"],
        "a.org",
    ),
    (
        "invite of a local user",
        member_event(ALICE, f"@dave:{OURS}", "invite"),
        {"a.org"},
        None,
        (),
        ["a.org"],
        None,
    ),
    (
        "local leave",
        member_event(ALICE, ALICE, "leave"),
        {"a.org"},
        "join",
        (),
        ["a.org"],
        None,
    ),
]


@pytest.mark.parametrize(
    ("event", "joined", "target_before", "exclude", "pdus", "invite"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_destination_rule(
    event: Event,
    joined: set[str],
    target_before: str | None,
    exclude: tuple[str, ...],
    pdus: list[str],
    invite: str | None,
) -> None:
    assert destinations_for(
        event, joined, our_server=OURS, exclude=exclude, target_before=target_before
    ) == (pdus, invite)


# --- the write paths ----------------------------------------------------------------------------
async def outbox(server: Server) -> list[tuple[str, dict[str, Any]]]:
    rows = await server.hs.store.db.fetchall(
        "SELECT destination, payload FROM federation_outbox ORDER BY id"
    )
    return [(d, parse_json(p)) for d, p in rows]


async def clear_outbox(server: Server) -> None:
    async with server.hs.store.db.transaction("test_clear") as txn:
        await txn.execute("DELETE FROM federation_outbox")


async def remote_join(server: Server, room_id: str, user_id: str) -> Event:
    """A remote member's join as federation would have stored it (built locally here)."""
    draft = EventDraft("m.room.member", user_id, {"membership": "join"}, user_id)
    return await server.hs.sender.send(room_id, draft)


async def send_text(server: Server, room_id: str, sender: str) -> Event:
    draft = EventDraft("m.room.message", sender, {"msgtype": "m.text", "body": "hi"})
    return await server.hs.sender.send(room_id, draft)


def pdu(event: Event) -> dict[str, Any]:
    return {"kind": "pdu", "event_id": event.event_id}


async def test_local_room_costs_one_query_and_queues_nothing(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    room = await create_room(server, alice, preset="public_chat")
    await server.hs.membership.join(bob.user_id, room)
    outbox_store = server.hs.store.outbox
    calls: list[str] = []
    original = outbox_store.joined_servers_txn

    async def counting(txn: Any, room_id: str, our_server: str) -> set[str]:
        calls.append(room_id)
        return await original(txn, room_id, our_server)

    monkeypatch.setattr(outbox_store, "joined_servers_txn", counting)
    await send_text(server, room, alice.user_id)
    await server.hs.membership.leave(bob.user_id, room)
    assert calls == [room, room]
    assert await outbox(server) == []


async def test_messages_go_to_every_joined_server(server: Server) -> None:
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat")
    await remote_join(server, room, "@x:a.example")
    await remote_join(server, room, "@y:b.example")
    await remote_join(server, room, "@z:b.example")
    # Servers whose only members are invited, banned or gone get nothing of the room.
    await server.hs.membership.invite(alice.user_id, room, "@i:invited.example")
    await server.hs.membership.ban(alice.user_id, room, "@b:banned.example")
    await remote_join(server, room, "@l:left.example")
    await server.hs.membership.kick(alice.user_id, room, "@l:left.example")
    await clear_outbox(server)
    message = await send_text(server, room, alice.user_id)
    assert await outbox(server) == [("a.example", pdu(message)), ("b.example", pdu(message))]


async def test_kick_reaches_the_leavers_server_and_later_events_do_not(
    server: Server,
) -> None:
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat")
    await remote_join(server, room, "@x:a.example")
    await remote_join(server, room, "@y:b.example")
    await server.hs.membership.kick(alice.user_id, room, "@y:b.example", reason="bye")
    kick_id = await server.hs.store.state.get_current_state_event_id(
        room, "m.room.member", "@y:b.example"
    )
    assert kick_id is not None
    rows = await outbox(server)
    kick_rows = [d for d, p in rows if p == {"kind": "pdu", "event_id": kick_id}]
    assert kick_rows == ["a.example", "b.example"]
    await clear_outbox(server)
    message = await send_text(server, room, alice.user_id)
    assert await outbox(server) == [("a.example", pdu(message))]


async def test_a_pre_emptive_ban_does_not_reach_the_banned_users_server(server: Server) -> None:
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat")
    await remote_join(server, room, "@x:a.example")
    await clear_outbox(server)
    await server.hs.membership.ban(alice.user_id, room, "@spammer:evil.example", reason="spam")
    ban_id = await server.hs.store.state.get_current_state_event_id(
        room, "m.room.member", "@spammer:evil.example"
    )
    assert ban_id is not None
    assert await outbox(server) == [("a.example", {"kind": "pdu", "event_id": ban_id})]


async def test_ban_and_rescinded_invite_reach_the_target_server(server: Server) -> None:
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat")
    await remote_join(server, room, "@y:b.example")
    await server.hs.membership.invite(alice.user_id, room, "@carol:c.example")
    await clear_outbox(server)
    await server.hs.membership.ban(alice.user_id, room, "@y:b.example", reason="bye")
    await server.hs.membership.kick(alice.user_id, room, "@carol:c.example", reason="changed mind")
    state = server.hs.store.state
    ban_id = await state.get_current_state_event_id(room, "m.room.member", "@y:b.example")
    rescind_id = await state.get_current_state_event_id(room, "m.room.member", "@carol:c.example")
    assert ban_id and rescind_id
    assert await outbox(server) == [
        ("b.example", {"kind": "pdu", "event_id": ban_id}),
        ("c.example", {"kind": "pdu", "event_id": rescind_id}),
    ]


async def test_invite_of_a_remote_user(server: Server) -> None:
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat", room_version="11")
    await remote_join(server, room, "@x:a.example")
    await clear_outbox(server)
    await server.hs.membership.invite(alice.user_id, room, "@carol:c.example")
    await server.hs.membership.invite(alice.user_id, room, "@dan:a.example")
    state = server.hs.store.state
    carol = await state.get_current_state_event_id(room, "m.room.member", "@carol:c.example")
    dan = await state.get_current_state_event_id(room, "m.room.member", "@dan:a.example")
    assert carol is not None and dan is not None

    def invite(event_id: str) -> dict[str, Any]:
        return {"kind": "invite", "room_id": room, "event_id": event_id, "room_version": "11"}

    assert await outbox(server) == [
        # c.example is not in the room: only the invite itself, by v2/invite
        ("c.example", invite(carol)),
        ("a.example", {"kind": "pdu", "event_id": carol}),
        # a.example is: v2/invite first (it signs), then the PDU through /send
        ("a.example", invite(dan)),
        ("a.example", {"kind": "pdu", "event_id": dan}),
    ]


async def test_exclude_and_our_server(server: Server) -> None:
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat")
    await remote_join(server, room, "@x:a.example")
    await remote_join(server, room, "@y:b.example")
    await clear_outbox(server)
    event = await server.hs.store.events.get_event(
        await server.hs.store.state.get_current_state_event_id(
            room, "m.room.member", "@y:b.example"
        )
        or ""
    )
    assert event is not None
    async with server.hs.store.db.transaction("test_fanout") as txn:
        destinations = await enqueue_event_txn(
            txn, server.hs.store, event, our_server=OURS, exclude=["b.example"]
        )
    assert destinations == ["a.example"]
    assert await outbox(server) == [("a.example", pdu(event))]


async def test_upgrade_sends_the_old_rooms_tombstone_then_the_invite(server: Server) -> None:
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat", room_version="10")
    await remote_join(server, room, "@x:a.example")
    await clear_outbox(server)
    status, body = await upgrade(server, alice, room, "11")
    assert status == 200, body
    new_room = body["replacement_room"]
    state = server.hs.store.state
    tombstone = await state.get_current_state_event_id(room, "m.room.tombstone", "")
    power = await state.get_current_state_event_id(room, "m.room.power_levels", "")
    invite = await state.get_current_state_event_id(new_room, "m.room.member", "@x:a.example")
    assert tombstone and power and invite
    rows = await outbox(server)
    assert [d for d, _ in rows] == ["a.example"] * 3
    assert [p for _, p in rows] == [
        {"kind": "pdu", "event_id": tombstone},
        {"kind": "pdu", "event_id": power},
        {"kind": "invite", "room_id": new_room, "event_id": invite, "room_version": "11"},
    ]


async def test_listeners_hear_of_commits_not_rollbacks(server: Server) -> None:
    alice = await server.register("alice")
    room = await create_room(server, alice, preset="public_chat")
    await remote_join(server, room, "@x:a.example")
    heard: list[set[str]] = []
    server.hs.store.outbox.add_listener(heard.append)
    await send_text(server, room, alice.user_id)
    assert heard == [{"a.example"}]
    heard.clear()
    with pytest.raises(RuntimeError):
        async with server.hs.store.db.transaction("test_rollback") as txn:
            await server.hs.store.outbox.enqueue_txn(txn, "z.example", {"kind": "pdu"}, now=1)
            raise RuntimeError("roll back")
    assert heard == []
    assert all(d != "z.example" for d, _ in await outbox(server))
