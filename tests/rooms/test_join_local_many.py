"""``MembershipService.join_local_many``: many of our users joined in one transaction (the
batch behind following another server's upgrade) pass the same gate as one join each — an
uninvited user of an invite-only room and a banned user are refused with the messages a single
join gives, the others joined; the caller's work in the same transaction undoes the whole
batch when it fails. ``StateStore.is_host_joined`` compares the server name exactly. Both
engines."""

from __future__ import annotations

import pytest

from homeserver.app import Homeserver
from homeserver.storage.database import Transaction
from homeserver.visibility.client import get_membership
from tests import harness


async def _membership(hs: Homeserver, room_id: str, user_id: str) -> str | None:
    event = await get_membership(hs.store, room_id, user_id)
    return None if event is None else event.membership


async def _invite_only_room(server: harness.TestServer, alice: harness.TestUser) -> str:
    status, body = await server.call("POST", "/createRoom", alice, json={"preset": "private_chat"})
    assert status == 200, body
    return str(body["room_id"])


async def _ok(
    server: harness.TestServer, user: harness.TestUser, path: str, body: dict[str, str]
) -> None:
    status, answer = await server.call("POST", path, user, json=body)
    assert status == 200, answer


async def test_batch_refuses_the_banned_and_the_uninvited_and_joins_the_rest(
    server: harness.TestServer, hs: Homeserver
) -> None:
    alice, bob, carol, dave = [await server.register(n) for n in ("alice", "bob", "carol", "dave")]
    room = await _invite_only_room(server, alice)
    # We are in the room (the batch's precondition), by an exact compare of the server name.
    assert await hs.store.state.is_host_joined(room, "test.example")
    for other in ("example", "TEST.EXAMPLE", "st.example", "t_st.example", "%"):
        assert not await hs.store.state.is_host_joined(room, other), other
    await _ok(server, alice, f"/rooms/{room}/invite", {"user_id": bob.user_id})
    await _ok(server, alice, f"/rooms/{room}/invite", {"user_id": dave.user_id})
    await _ok(server, alice, f"/rooms/{room}/ban", {"user_id": dave.user_id})
    alice_join = await hs.store.state.get_current_state_event_id(
        room, "m.room.member", alice.user_id
    )
    await hs.store.profiles.set_field(bob.user_id, "displayname", "Bob B")
    seen: list[list[str]] = []

    async def in_txn(txn: Transaction, joined: list[str]) -> None:
        seen.append(sorted(joined))

    users = [alice.user_id, bob.user_id, carol.user_id, dave.user_id]
    result = await hs.membership.join_local_many(room, users, in_txn=in_txn)

    assert sorted(result.joined) == sorted([alice.user_id, bob.user_id])
    assert result.joined[alice.user_id] == alice_join  # already joined: no new event
    assert seen == [sorted([alice.user_id, bob.user_id])]
    assert result.one_by_one == []
    refused = {u: (e.status, e.errcode, e.message) for u, e in result.refused.items()}
    assert refused == {
        carol.user_id: (403, "M_FORBIDDEN", "You are not invited to this room."),
        dave.user_id: (403, "M_FORBIDDEN", "You are banned from this room"),
    }
    assert await _membership(hs, room, bob.user_id) == "join"
    assert await _membership(hs, room, carol.user_id) is None
    assert await _membership(hs, room, dave.user_id) == "ban"
    await _ok(server, alice, f"/rooms/{room}/leave", {})
    assert await hs.store.state.is_host_joined(room, "test.example")  # bob still is
    # The join the batch made is an ordinary event of the room, current state included.
    bob_join = await hs.store.state.get_current_state_event(room, "m.room.member", bob.user_id)
    assert bob_join is not None and bob_join.event_id == result.joined[bob.user_id]
    assert bob_join.content == {"membership": "join", "displayname": "Bob B"}  # his profile


async def test_a_failing_caller_step_undoes_the_whole_batch(
    server: harness.TestServer, hs: Homeserver
) -> None:
    alice, bob, carol = [await server.register(n) for n in ("alice", "bob", "carol")]
    room = await _invite_only_room(server, alice)
    for user in (bob, carol):
        await _ok(server, alice, f"/rooms/{room}/invite", {"user_id": user.user_id})
    extremities = await hs.store.events.get_forward_extremities(room)

    async def in_txn(txn: Transaction, joined: list[str]) -> None:
        raise RuntimeError("the caller's rows were taken")

    with pytest.raises(RuntimeError):
        await hs.membership.join_local_many(room, [bob.user_id, carol.user_id], in_txn=in_txn)
    for user in (bob, carol):
        assert await _membership(hs, room, user.user_id) == "invite"
    after = await hs.store.events.get_forward_extremities(room)
    assert set(after.event_ids) == set(extremities.event_ids)
