"""The run fast path of homeserver.federation.linear_runs, on both engines: chained PDUs of one
room stored per run, and everything that must leave the run for the general pipeline."""

from __future__ import annotations

from typing import Any

from homeserver.app import Homeserver
from homeserver.events.event import Event
from homeserver.federation.linear_runs import LinearRuns
from tests.builders import create_public_room
from tests.federation.received_helpers import Remote
from tests.harness import TestServer, TestUser


async def _setup(server: TestServer) -> tuple[TestUser, str, Remote]:
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice)
    remote = Remote()
    await remote.seed_key(server.hs)
    await remote.join(server.hs, room_id)
    return alice, room_id, remote


async def _chain(
    hs: Homeserver,
    remote: Remote,
    room_id: str,
    count: int,
    *,
    sender: str | None = None,
    prev: str | None = None,
) -> list[Event]:
    """``count`` messages, each on the one before (the first on ``prev`` or our extremity)."""
    events = []
    room_version = await hs.received_events.room_version_of(room_id)
    for index in range(count):
        event_id, pdu = await remote.build(
            hs,
            room_id,
            type="m.room.message",
            sender=sender or remote.user("r"),
            content={"msgtype": "m.text", "body": f"#{index}"},
            prev_events=[prev] if prev else None,
        )
        events.append(await hs.received_events.check_pdu(room_version, pdu, origin=remote.name))
        prev = event_id
    return events


async def _timeline(server: TestServer, user: TestUser, room_id: str) -> list[str]:
    status, body = await server.call("GET", "/sync", user, params={"filter": _LIMIT})
    assert status == 200, body
    return [e["event_id"] for e in body["rooms"]["join"][room_id]["timeline"]["events"]]


_LIMIT = '{"room": {"timeline": {"limit": 100}}}'


async def _stored_statements(hs: Homeserver, events: list[Event]) -> list[int]:
    stored = await hs.store.events.get_events([e.event_id for e in events])
    return [stored[e.event_id].internal.stream_ordering or 0 for e in events]


async def test_chain_is_stored_as_one_run(server: TestServer) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    events = await _chain(hs, remote, room_id, 20)
    # Built ahead, so every PDU names the one before it: a single run.
    transactions: list[str] = []
    original = hs.store.db.run_in_transaction

    async def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        transactions.append(name)
        return await original(name, *args, **kwargs)

    hs.store.db.run_in_transaction = counting  # type: ignore[method-assign]
    try:
        outcomes = await hs.received_events.on_receive_pdus(remote.name, events)
    finally:
        hs.store.db.run_in_transaction = original  # type: ignore[method-assign]
    assert outcomes == {e.event_id: None for e in events}
    assert transactions == ["receive_pdu_run"]
    extremities = await hs.store.events.get_forward_extremities(room_id)
    assert extremities.event_ids == [events[-1].event_id]
    orderings = await _stored_statements(hs, events)
    assert orderings == sorted(orderings)
    timeline = await _timeline(server, alice, room_id)
    assert timeline[-20:] == [e.event_id for e in events]


async def test_state_change_inside_a_run_applies_to_later_events(server: TestServer) -> None:
    """A second remote user joins mid-run and then talks: the later message is checked against
    the run's in-memory state (where that member exists), not the stored state."""
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    room_version = await hs.received_events.room_version_of(room_id)
    (first,) = await _chain(hs, remote, room_id, 1)
    join_id, join_pdu = await remote.build(
        hs,
        room_id,
        type="m.room.member",
        sender=remote.user("s"),
        state_key=remote.user("s"),
        content={"membership": "join"},
        prev_events=[first.event_id],
    )
    remote.learn([first], room_version)
    join = await hs.received_events.check_pdu(room_version, join_pdu, origin=remote.name)
    state = dict(await hs.store.state.get_current_state_ids(room_id))
    state[("m.room.member", remote.user("s"))] = join_id
    msg_id, msg_pdu = await remote.build(
        hs,
        room_id,
        type="m.room.message",
        sender=remote.user("s"),
        content={"msgtype": "m.text", "body": "new here"},
        prev_events=[join_id],
        auth_state=state,
    )
    message = await hs.received_events.check_pdu(room_version, msg_pdu, origin=remote.name)
    outcomes = await hs.received_events.on_receive_pdus(remote.name, [first, join, message])
    assert outcomes == {first.event_id: None, join_id: None, msg_id: None}
    assert remote.user("s") in await hs.store.state.get_current_members(room_id)
    assert msg_id in await _timeline(server, alice, room_id)


async def test_failing_event_ends_the_run_and_is_rejected(server: TestServer) -> None:
    """A message from a user who never joined: the run before it is stored, it is stored
    rejected by the general pipeline, and the run after it (built on the accepted part) goes on."""
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    before = await _chain(hs, remote, room_id, 3)
    (intruder,) = await _chain(
        hs, remote, room_id, 1, sender=remote.user("nobody"), prev=before[-1].event_id
    )
    after = await _chain(hs, remote, room_id, 2, prev=before[-1].event_id)
    outcomes = await hs.received_events.on_receive_pdus(remote.name, [*before, intruder, *after])
    assert all(outcomes[e.event_id] is None for e in [*before, *after])
    assert outcomes[intruder.event_id] is not None
    stored = await hs.store.events.get_event(intruder.event_id)
    assert stored is not None and stored.rejected
    timeline = await _timeline(server, alice, room_id)
    assert intruder.event_id not in timeline
    assert [e.event_id for e in after] == timeline[-2:]
    extremities = await hs.store.events.get_forward_extremities(room_id)
    assert extremities.event_ids == [after[-1].event_id]


async def test_repeats_and_forks_leave_the_run(server: TestServer) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    first = await _chain(hs, remote, room_id, 2)
    assert await hs.received_events.on_receive_pdus(remote.name, first) == {
        e.event_id: None for e in first
    }
    # A repeat of a stored event, then a fork on the first event, then the same event twice.
    fork = await _chain(hs, remote, room_id, 1, prev=first[0].event_id)
    outcomes = await hs.received_events.on_receive_pdus(remote.name, [first[1], fork[0], fork[0]])
    assert outcomes == {first[1].event_id: None, fork[0].event_id: None}
    extremities = await hs.store.events.get_forward_extremities(room_id)
    assert set(extremities.event_ids) == {first[1].event_id, fork[0].event_id}
    timeline = await _timeline(server, alice, room_id)
    assert timeline.count(fork[0].event_id) == 1


async def test_room_moved_under_the_run(server: TestServer) -> None:
    """A local state event lands on the extremity the run was planned on: the run is not stored as
    such; its events go through the general pipeline and the room keeps both branches."""
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    events = await _chain(hs, remote, room_id, 3)
    received = hs.received_events
    runs = LinearRuns(
        hs.store,
        room_version_of=received.room_version_of,
        process=received.process,
        after_stored=received.after_run_stored,
    )
    original = runs._store_run

    async def local_send_first(origin: str, run: Any, outcomes: Any) -> None:
        if run.events:
            status, body = await server.call(
                "PUT",
                f"/rooms/{room_id}/state/m.room.topic",
                alice,
                json={"topic": "meanwhile"},
            )
            assert status == 200, body
        await original(origin, run, outcomes)

    runs._store_run = local_send_first  # type: ignore[method-assign]
    async with hs.received_events.room_lock(room_id):
        outcomes = await runs.receive(remote.name, events)
    assert outcomes == {e.event_id: None for e in events}
    timeline = await _timeline(server, alice, room_id)
    assert all(e.event_id in timeline for e in events)
    extremities = await hs.store.events.get_forward_extremities(room_id)
    assert events[-1].event_id in extremities.event_ids
    assert len(extremities.event_ids) == 2
    # The local branch's state change survives: the current state is the resolution of both.
    topic = await hs.store.state.get_current_state_event(room_id, "m.room.topic", "")
    assert topic is not None and topic.content == {"topic": "meanwhile"}


async def test_local_event_while_a_fork_is_resolved(server: TestServer) -> None:
    """The general pipeline resolves the current state at a fork outside its write
    transaction: a local state event landing meanwhile makes it resolve again, so neither the
    local change nor the received event's is lost."""
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    first = await _chain(hs, remote, room_id, 2)
    await hs.received_events.on_receive_pdus(remote.name, first)
    # A remote state event (a second user's join) forking off the first message (the room's
    # extremity is the second).
    room_version = await hs.received_events.room_version_of(room_id)
    fork_id, fork_pdu = await remote.build(
        hs,
        room_id,
        type="m.room.member",
        sender=remote.user("s"),
        state_key=remote.user("s"),
        content={"membership": "join"},
        prev_events=[first[0].event_id],
    )
    fork = await hs.received_events.check_pdu(room_version, fork_pdu, origin=remote.name)
    received = hs.received_events
    original = received.states.resolved_current_state
    calls = 0

    async def local_topic_first(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            status, body = await server.call(
                "PUT", f"/rooms/{room_id}/state/m.room.topic", alice, json={"topic": "local"}
            )
            assert status == 200, body
        return await original(*args)

    received.states.resolved_current_state = local_topic_first  # type: ignore[method-assign]
    try:
        outcomes = await received.on_receive_pdus(remote.name, [fork])
    finally:
        received.states.resolved_current_state = original  # type: ignore[method-assign]
    assert outcomes == {fork_id: None}
    assert calls == 2
    topic = await hs.store.state.get_current_state_event(room_id, "m.room.topic", "")
    assert topic is not None and topic.content == {"topic": "local"}
    assert remote.user("s") in await hs.store.state.get_current_members(room_id)
