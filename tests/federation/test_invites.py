"""Invites of our users by other servers (inbound v2/invite, v1/invite), shown in /sync as
out-of-band invites, accepted (remote join) and rejected (remote leave); both engines.

The validation tests use a network-free fake remote (its key seeded in our store) that builds a
small room of its own; the accept/reject flows run two of our servers over real HTTPS.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from homeserver.crypto.base64 import encode_base64
from homeserver.crypto.signing import get_verify_key, key_id
from homeserver.events.event import Event
from homeserver.events.hashes import compute_reference_hash
from homeserver.events.signing import verify_event_signature
from homeserver.room_versions import get_room_version
from homeserver.storage import Store
from tests.federation.cs_client import q
from tests.federation.h4_helpers import second_store, two_servers
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer

__all__ = ["second_store"]


def _remote_room(remote: Remote, version_id: str, invitee: str) -> tuple[list[dict], dict]:
    """A room of ``remote``'s (create, creator's join, power levels, invite-only join rule)
    and an invite of ``invitee`` into it: ``(state PDUs, invite PDU)``."""
    version = get_room_version(version_id)
    creator = remote.user("carol")
    ts = 1_700_000_000_000
    create: dict[str, Any] = {
        "type": "m.room.create",
        "state_key": "",
        "sender": creator,
        "content": {"room_version": version_id, "creator": creator},
        "depth": 1,
        "origin_server_ts": ts,
        "prev_events": [],
        "auth_events": [],
    }
    if not version.room_id_is_create_event_hash:
        create["room_id"] = f"!room{version_id}:{remote.name}"
    if version.event_refs_carry_hashes:
        create["event_id"] = f"$e0:{remote.name}"
    remote.sign(version, create)
    create_event = Event(create, version)
    room_id = create_event.room_id
    events = [create_event]

    def ref(event: Event) -> Any:
        if not version.event_refs_carry_hashes:
            return event.event_id
        digest = compute_reference_hash(version, event.pdu)
        return [event.event_id, {"sha256": encode_base64(digest)}]

    cited = [ref(create_event)] if version.create_event_in_auth_events else []

    def add(type_: str, state_key: str, content: dict[str, Any], auth: list[Event]) -> Event:
        pdu = {
            "type": type_,
            "room_id": room_id,
            "state_key": state_key,
            "sender": creator,
            "content": content,
            "depth": len(events) + 1,
            "origin_server_ts": ts + len(events),
            "prev_events": [ref(events[-1])],
            "auth_events": cited + [ref(e) for e in auth],
        }
        if version.event_refs_carry_hashes:
            pdu["event_id"] = f"$e{len(events)}:{remote.name}"
        remote.sign(version, pdu)
        event = Event(pdu, version)
        events.append(event)
        return event

    join = add("m.room.member", creator, {"membership": "join"}, [])
    users = {} if version.creators_have_infinite_power else {creator: 100}
    power = add("m.room.power_levels", "", {"users": users}, [join])
    rules = add("m.room.join_rules", "", {"join_rule": "invite"}, [join, power])
    invite = add("m.room.member", invitee, {"membership": "invite"}, [join, power, rules])
    return [e.pdu for e in events[:-1]], invite.pdu


def _invite_path(version_id: str, pdu: dict[str, Any], api: str = "v2") -> str:
    event = Event(pdu, get_room_version(version_id))
    return f"/_matrix/federation/{api}/invite/{q(event.room_id)}/{q(event.event_id)}"


async def _setup(server: TestServer) -> tuple[Remote, Any]:
    bob = await server.register("bob")
    remote = Remote()
    await remote.seed_key(server.hs)
    return remote, bob


@pytest.mark.parametrize("version_id", ["10", "12"])
async def test_invite_is_signed_kept_and_synced(server: TestServer, version_id: str) -> None:
    hs = server.hs
    remote, bob = await _setup(server)
    status, first_sync = await server.call("GET", "/sync", bob)
    assert status == 200
    state, invite = _remote_room(remote, version_id, bob.user_id)
    body = {"room_version": version_id, "event": invite, "invite_room_state": state}
    status, answer = await signed_request(
        server, remote, "PUT", _invite_path(version_id, invite), body
    )
    assert status == 200, answer
    signed = answer["event"]
    assert "invite_room_state" not in signed.get("unsigned", {})
    version = get_room_version(version_id)
    ours = get_verify_key(hs.signing_key)
    verify_event_signature(version, signed, hs.server_name, key_id(ours), ours)
    assert {k: v for k, v in signed.items() if k != "signatures"} == {
        k: v for k, v in invite.items() if k != "signatures"
    }
    invite_event = Event(invite, version)
    room_id = invite_event.room_id

    def check(sync: dict[str, Any]) -> None:
        events = sync["rooms"]["invite"][room_id]["invite_state"]["events"]
        assert events[-1]["event_id"] == invite_event.event_id
        assert events[-1]["content"]["membership"] == "invite"
        stripped = {e["type"] for e in events[:-1]}
        assert {"m.room.create", "m.room.join_rules"} <= stripped
        assert all(set(e) == {"type", "state_key", "sender", "content"} for e in events[:-1])

    status, sync = await server.call("GET", "/sync", bob)  # initial
    check(sync)
    status, sync = await server.call(
        "GET", "/sync", bob, params={"since": first_sync["next_batch"], "timeout": "0"}
    )
    check(sync)  # incremental, since before the invite
    status, later = await server.call(
        "GET", "/sync", bob, params={"since": sync["next_batch"], "timeout": "0"}
    )
    assert room_id not in later["rooms"]["invite"]  # nothing new since


async def test_v1_invite(server: TestServer) -> None:
    remote, bob = await _setup(server)
    state, invite = _remote_room(remote, "1", bob.user_id)
    pdu = copy.deepcopy(invite)
    pdu["unsigned"] = {"invite_room_state": state}
    status, answer = await signed_request(
        server, remote, "PUT", _invite_path("1", invite, "v1"), pdu
    )
    assert status == 200, answer
    assert answer[0] == 200 and answer[1]["event"]["event_id"] == invite["event_id"]
    status, sync = await server.call("GET", "/sync", bob)
    assert invite["room_id"] in sync["rooms"]["invite"]


async def test_invalid_invites_are_refused(server: TestServer) -> None:
    hs = server.hs
    remote, bob = await _setup(server)
    await server.register("carl")
    state, invite = _remote_room(remote, "10", bob.user_id)
    version = get_room_version("10")

    async def send(
        pdu: dict[str, Any], room_state: Any = state, version_id: Any = "10", resign: bool = True
    ) -> tuple[int, Any]:
        if resign:
            remote.sign(version, pdu)
        body = {"room_version": version_id, "event": pdu, "invite_room_state": room_state}
        return await signed_request(server, remote, "PUT", _invite_path("10", pdu), body)

    def changed(**fields: Any) -> dict[str, Any]:
        return {**copy.deepcopy(invite), **fields}

    status, body = await send(copy.deepcopy(invite), version_id="99")
    assert (status, body["errcode"]) == (400, "M_INCOMPATIBLE_ROOM_VERSION")
    assert body["room_version"] == "99"
    cases = [
        changed(content={"membership": "join"}),  # not an invite
        changed(type="m.room.message"),  # not a member event
        changed(state_key="@nobody:test.example"),  # not one of our users
        changed(state_key="@bob:elsewhere.example"),  # not our server's user
        changed(sender="@carol:elsewhere.example"),  # sender not on the origin
    ]
    for pdu in cases:
        status, body = await send(pdu)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), pdu
    # A bad signature.
    forged = copy.deepcopy(invite)
    forged["signatures"] = {remote.name: {"ed25519:remote1": "A" * 86}}
    status, body = await send(forged, resign=False)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # invite_room_state: without the create event; with another room's event; malformed.
    status, body = await send(copy.deepcopy(invite), room_state=state[1:])
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    other_state, _ = _remote_room(remote, "11", bob.user_id)
    status, body = await send(copy.deepcopy(invite), room_state=[*state, other_state[0]])
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await send(copy.deepcopy(invite), room_state={"no": "list"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # A path naming another event.
    body = {"room_version": "10", "event": invite, "invite_room_state": state}
    path = f"/_matrix/federation/v2/invite/{q(invite['room_id'])}/{q('$other')}"
    status, answer = await signed_request(server, remote, "PUT", path, body)
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")
    # Nothing was kept.
    assert await hs.store.out_of_band.get(bob.user_id, invite["room_id"]) is None
    status, sync = await server.call("GET", "/sync", bob)
    assert sync["rooms"]["invite"] == {}


async def test_invite_accepted_and_rejected_across_servers(
    tmp_path: Path, store: Store, second_store: Store
) -> None:
    async with two_servers(tmp_path, store, second_store) as (a, b):
        alice = await a.user("alice")
        bob = await b.user("bob")
        first = await alice.create_room(preset="private_chat", name="Secret")
        second = await alice.create_room(preset="private_chat")
        await alice.invite(first, bob.user_id)
        await alice.invite(second, bob.user_id)
        stripped = await bob.wait_for_invite(first, timeout=60)
        assert any(e["type"] == "m.room.name" for e in stripped)
        assert stripped[-1]["type"] == "m.room.member"
        await bob.wait_for_invite(second, timeout=60)

        # Accepting: a join through the inviter's server (no server_name needed).
        assert await bob.join(first) == first
        assert bob.user_id in await a.hs.store.state.get_current_members(first, "join")
        await bob.wait_for(lambda: first in bob.joined, 60, "joined the first room")
        assert first not in bob.invites
        await alice.send_message(first, "welcome")
        await bob.wait_for_message(first, "welcome", timeout=60)

        # Rejecting: a leave through the inviter's server; both sides see it.
        await bob.leave(second)
        member = await a.hs.store.state.get_current_state_event(
            second, "m.room.member", bob.user_id
        )
        assert member is not None and member.membership == "leave"
        await bob.wait_for(lambda: second not in bob.invites, 60, "the invite gone")
        sync = await bob.sync_once(timeout_ms=0)
        assert second not in sync["rooms"]["invite"]
        row = await b.hs.store.out_of_band.get(bob.user_id, second)
        assert row is not None and row.membership == "leave"
