"""The push evaluator's members per state group (push/room_members.py): a flood of joins is
judged without reading the member list per join, and who is told, the member count and the
sender's power still follow every membership and power-levels change, on both engines."""

from __future__ import annotations

import pytest

from homeserver.app import Homeserver
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.push import evaluation
from tests.builders import invite, join, leave, make_room, say
from tests.harness import TestServer

JOINERS = 30


@pytest.fixture(params=["all-rule-users-at-once", "per-member"])
def rule_users_read(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the evaluator learns who has rules of their own: every such user read once
    per batch (few on the server), or each member asked about (many)."""
    if request.param == "per-member":
        monkeypatch.setattr(evaluation, "RULE_USERS_READ_WHOLE", 0)
    return str(request.param)


async def _told(hs: Homeserver, event_id: str) -> dict[str, bool]:
    rows = await hs.store.db.fetchall(
        "SELECT user_id, highlight FROM event_push_actions WHERE event_id = ?", event_id
    )
    return {user_id: bool(highlight) for user_id, highlight in rows}


async def _mention_room(hs: Homeserver, room_id: str, sender: str) -> Event:
    content = {"msgtype": "m.text", "body": "everyone!", "m.mentions": {"room": True}}
    return await hs.sender.send(room_id, EventDraft("m.room.message", sender, content))


async def test_joins_one_after_another_read_the_members_once(
    server: TestServer, hs: Homeserver, rule_users_read: str
):
    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id)
    await hs.push_evaluator.process_pending()
    joiner_users = [await server.register(f"joiner{i}") for i in range(JOINERS)]
    joiners = [u.user_id for u in joiner_users]
    joiner_user = joiner_users[3]
    for user_id in joiners:
        await join(hs, room_id, user_id)
    members = hs.push_evaluator._members
    loads_before = members.loads
    await hs.push_evaluator.process_pending()
    # One full read at most (the state before the first join, if no longer kept); each join
    # after it follows from the one before.
    assert members.loads - loads_before <= 1

    # A member with a rule of their own that makes joins notify them: judged on their own
    # rules while everyone else shares the defaults' silence.
    status, answer = await server.call(
        "PUT",
        "/pushrules/global/override/joins",
        joiner_user,
        json={
            "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.member"}],
            "actions": ["notify"],
        },
    )
    assert status == 200, answer
    late = await server.register("late")
    late_join = await join(hs, room_id, late.user_id)
    hello = await say(hs, room_id, alice.user_id, "hello everyone")
    await leave(hs, room_id, joiners[0])
    carol = await server.register("carol")
    invitation = await invite(hs, room_id, alice.user_id, carol.user_id)
    after_leave = await say(hs, room_id, alice.user_id, "one fewer")
    await hs.push_evaluator.process_pending()
    assert set(await _told(hs, late_join.event_id)) == {joiner_user.user_id}
    assert set(await _told(hs, hello.event_id)) == {*joiners, late.user_id}
    assert set(await _told(hs, after_leave.event_id)) == {*joiners[1:], late.user_id}
    # The invitee is told of the invite (not joined, so of nothing else); so is the member
    # whose own rule notifies every membership event.
    assert set(await _told(hs, invitation.event_id)) == {carol.user_id, joiner_user.user_id}


async def test_power_levels_changed_in_the_run_decide_room_mentions(
    server: TestServer, hs: Homeserver, rule_users_read: str
):
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await join(hs, room_id, bob.user_id)
    # A room mention needs the sender to reach ``notifications.room`` (50): bob (0) cannot,
    # then can.
    unheard = await _mention_room(hs, room_id, bob.user_id)
    levels = await hs.store.state.get_current_state_event(room_id, "m.room.power_levels")
    assert levels is not None
    content = {**levels.content, "users": {**levels.content["users"], bob.user_id: 50}}
    await hs.sender.send(room_id, EventDraft("m.room.power_levels", alice.user_id, content, ""))
    heard = await _mention_room(hs, room_id, bob.user_id)
    await hs.push_evaluator.process_pending()
    assert (await _told(hs, unheard.event_id)).get(alice.user_id) is not True
    assert await _told(hs, heard.event_id) == {alice.user_id: True}


async def test_a_fork_reads_its_state_afresh(server: TestServer, hs: Homeserver):
    """Two events on one state (the second after the first moved the entry on): the second is
    judged on the state before it, not on the state after the first."""
    alice = await server.register("alice")
    bob = await server.register("bob")
    room_id = await make_room(hs, alice.user_id)
    await hs.push_evaluator.process_pending()
    members = hs.push_evaluator._members
    bob_join = await join(hs, room_id, bob.user_id)
    groups = await hs.store.state.get_state_groups_around([bob_join.event_id])
    before, after = groups[bob_join.event_id]
    await hs.push_evaluator.process_pending()
    on_after = await members.take(after)
    assert bob.user_id in on_after.joined
    loads = members.loads
    on_before = await members.take(before)  # moved on by the join: read again
    assert members.loads == loads + 1
    assert bob.user_id not in on_before.joined
    assert alice.user_id in on_before.local
    assert len(on_before.joined) == 1
