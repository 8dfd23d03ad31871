"""Our server as the authorising resident of a restricted room, on both engines: make_join
checks the allow list against our own state and names one of our users; send_join re-checks
before adding our signature. Hostile peers (received_helpers.Remote, with its own key) try
to get in without qualifying or with an authoriser of their choosing."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.event import Event
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, get_room_version
from tests.builders import make_room
from tests.federation.received_helpers import Remote, signed_request
from tests.harness import TestServer, TestUser
from tests.http_client import q

VERS = "&".join(f"ver={v}" for v in KNOWN_ROOM_VERSIONS)
VIA = "join_authorised_via_users_server"


def _make_join(room_id: str, user: str) -> str:
    return f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(user)}?{VERS}"


def _send_join(room_id: str, event_id: str) -> str:
    return f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event_id)}"


def _signed(remote: Remote, answer: dict[str, Any], **changes: Any) -> tuple[str, dict[str, Any]]:
    """A joining server's event from a template: ``changes`` applied, then signed."""
    version = get_room_version(answer["room_version"])
    pdu = dict(answer["event"])
    pdu["content"] = dict(pdu["content"])
    for key, value in changes.items():
        if key == "content":
            pdu["content"].update(value)
        else:
            pdu[key] = value
    pdu["origin_server_ts"] += 1
    remote.sign(version, pdu)
    return Event(pdu, version).event_id, pdu


async def _setup(
    server: TestServer,
    *,
    version: str = "10",
    join_rule: str = "restricted",
    extra_allow: list[str] = (),  # type: ignore[assignment]
    power_levels: dict[str, Any] | None = None,
) -> tuple[TestUser, Remote, str, str]:
    """alice owns a space (public) and a room restricted to it; the remote's bob joined the
    space. Returns (alice, remote, space_id, room_id)."""
    hs = server.hs
    alice = await server.register("alice")
    space = await make_room(hs, alice.user_id, version=version)
    remote = Remote()
    await remote.seed_key(hs)
    await remote.join(hs, space, "bob")
    allow = [{"type": "m.room_membership", "room_id": r} for r in (space, *extra_allow)]
    room_id = await make_room(
        hs,
        alice.user_id,
        version=version,
        join_rule=join_rule,
        allow=allow,
        power_levels=power_levels,
    )
    return alice, remote, space, room_id


@pytest.mark.parametrize(
    ("version", "join_rule"),
    [("8", "restricted"), ("10", "knock_restricted"), ("12", "restricted")],
)
async def test_member_of_allowed_room_joins_through_us(
    server: TestServer, version: str, join_rule: str
) -> None:
    hs = server.hs
    alice, remote, _space, room_id = await _setup(server, version=version, join_rule=join_rule)
    bob = remote.user("bob")
    status, answer = await signed_request(server, remote, "GET", _make_join(room_id, bob))
    assert status == 200, answer
    assert answer["event"]["content"] == {"membership": "join", VIA: alice.user_id}
    event_id, pdu = _signed(remote, answer)
    assert "signatures" in pdu and hs.server_name not in pdu["signatures"]
    status, body = await signed_request(server, remote, "PUT", _send_join(room_id, event_id), pdu)
    assert status == 200, body
    # The answer's event carries our signature next to the joining server's.
    assert set(body["event"]["signatures"]) == {remote.name, hs.server_name}
    stored = await hs.store.state.get_current_state_event(room_id, "m.room.member", bob)
    assert stored is not None and stored.event_id == event_id
    assert stored.membership == "join" and hs.server_name in stored.signatures


async def test_non_member_gets_403(server: TestServer) -> None:
    _alice, remote, _space, room_id = await _setup(server)
    status, body = await signed_request(
        server, remote, "GET", _make_join(room_id, remote.user("eve"))
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body


async def test_unknown_allowed_room_is_unable_to_authorise(server: TestServer) -> None:
    hs = server.hs
    alice = await server.register("alice")
    remote = Remote()
    await remote.seed_key(hs)
    room_id = await make_room(
        hs,
        alice.user_id,
        join_rule="restricted",
        allow=[{"type": "m.room_membership", "room_id": "!elsewhere:other.example"}],
    )
    status, body = await signed_request(
        server, remote, "GET", _make_join(room_id, remote.user("bob"))
    )
    assert (status, body["errcode"]) == (400, "M_UNABLE_TO_AUTHORISE_JOIN"), body


async def test_partly_unknown_allow_list_is_unable_to_authorise_non_members(
    server: TestServer,
) -> None:
    _alice, remote, _space, room_id = await _setup(
        server, extra_allow=["!elsewhere:other.example"]
    )
    status, body = await signed_request(
        server, remote, "GET", _make_join(room_id, remote.user("eve"))
    )
    assert (status, body["errcode"]) == (400, "M_UNABLE_TO_AUTHORISE_JOIN"), body
    # A member of the known room is still let in.
    status, body = await signed_request(
        server, remote, "GET", _make_join(room_id, remote.user("bob"))
    )
    assert status == 200, body


async def test_no_local_user_can_invite_is_unable_to_grant(server: TestServer) -> None:
    _alice, remote, _space, room_id = await _setup(server, power_levels={"invite": 101})
    status, body = await signed_request(
        server, remote, "GET", _make_join(room_id, remote.user("bob"))
    )
    assert (status, body["errcode"]) == (400, "M_UNABLE_TO_GRANT_JOIN"), body


async def test_send_join_rechecks_the_allow_list(server: TestServer) -> None:
    """eve (not in the space) turns bob's template into her own join, naming alice."""
    hs = server.hs
    _alice, remote, _space, room_id = await _setup(server)
    bob, eve = remote.user("bob"), remote.user("eve")
    status, answer = await signed_request(server, remote, "GET", _make_join(room_id, bob))
    assert status == 200, answer
    event_id, pdu = _signed(remote, answer, sender=eve, state_key=eve)
    status, body = await signed_request(server, remote, "PUT", _send_join(room_id, event_id), pdu)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    assert await hs.store.state.get_current_state_event(room_id, "m.room.member", eve) is None


async def test_send_join_with_a_powerless_authoriser_is_refused(server: TestServer) -> None:
    hs = server.hs
    _alice, remote, space, room_id = await _setup(server, power_levels={"invite": 50})
    mallory = await server.register("mallory")
    for room in (space, room_id):  # joined, but below the invite level
        status, body = await server.call("POST", f"/join/{room}", mallory, json={})
        assert status == 200, body
    bob = remote.user("bob")
    status, answer = await signed_request(server, remote, "GET", _make_join(room_id, bob))
    assert status == 200, answer
    event_id, pdu = _signed(remote, answer, content={VIA: mallory.user_id})
    status, body = await signed_request(server, remote, "PUT", _send_join(room_id, event_id), pdu)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    assert await hs.store.state.get_current_state_event(room_id, "m.room.member", bob) is None


@pytest.mark.parametrize("via", ["@alice:other.example", "not-a-user", 5])
async def test_send_join_naming_another_servers_authoriser_is_refused(
    server: TestServer, via: Any
) -> None:
    hs = server.hs
    _alice, remote, _space, room_id = await _setup(server)
    bob = remote.user("bob")
    status, answer = await signed_request(server, remote, "GET", _make_join(room_id, bob))
    assert status == 200, answer
    event_id, pdu = _signed(remote, answer, content={VIA: via})
    status, body = await signed_request(server, remote, "PUT", _send_join(room_id, event_id), pdu)
    assert status in (400, 403), body
    assert body["errcode"] in ("M_INVALID_PARAM", "M_BAD_JSON", "M_FORBIDDEN")
    assert await hs.store.state.get_current_state_event(room_id, "m.room.member", bob) is None
