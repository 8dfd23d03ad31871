"""Receiving PDUs: the pipeline of homeserver.federation.received, on both engines.

Our server hosts the room (made through the client API); a fake remote server's user joins it
through the receive pipeline and then sends PDUs signed with the remote's key (seeded in
store.keys). Gap filling is served by a RemoteRequester standing in for the federation client.
"""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.app import Homeserver
from homeserver.events.builder import Signer
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.federation.pdu_checks import BadPduSignature, EventRejected
from homeserver.room_versions import get_room_version
from homeserver.rooms.event_builder import build_event
from homeserver.rooms.sender import BatchBuilder
from tests.builders import create_public_room
from tests.federation.received_helpers import Remote, RemoteRequester
from tests.harness import TestServer, TestUser


async def _timeline_ids(server: TestServer, user: TestUser, room_id: str) -> list[str]:
    status, body = await server.call("GET", "/sync", user)
    assert status == 200, body
    room = body["rooms"]["join"][room_id]
    return [e["event_id"] for e in room["timeline"]["events"]]


async def _setup(server: TestServer) -> tuple[TestUser, str, Remote]:
    alice = await server.register("alice")
    room_id = await create_public_room(server, alice)
    remote = Remote()
    await remote.seed_key(server.hs)
    await remote.join(server.hs, room_id)
    return alice, room_id, remote


async def _message(
    hs: Homeserver, remote: Remote, room_id: str, body: str = "hi", **kwargs: Any
) -> tuple[str, dict[str, Any]]:
    return await remote.build(
        hs,
        room_id,
        type="m.room.message",
        sender=remote.user("r"),
        content={"msgtype": "m.text", "body": body},
        **kwargs,
    )


async def test_accepted_message_reaches_local_sync(server: TestServer) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    assert remote.user("r") in await hs.store.state.get_current_members(room_id)
    event_id, pdu = await _message(hs, remote, room_id)
    await remote.receive(hs, pdu)
    assert event_id in await _timeline_ids(server, alice, room_id)
    extremities = await hs.store.events.get_forward_extremities(room_id)
    assert extremities.event_ids == [event_id]


async def test_bad_signature_is_dropped(server: TestServer) -> None:
    hs = server.hs
    _alice, room_id, remote = await _setup(server)
    event_id, pdu = await _message(hs, remote, room_id)
    (key_id,) = pdu["signatures"][remote.name]
    sig = pdu["signatures"][remote.name][key_id]
    pdu["signatures"][remote.name][key_id] = ("A" if sig[0] != "A" else "B") + sig[1:]
    with pytest.raises(BadPduSignature):
        await remote.receive(hs, pdu)
    assert await hs.store.events.get_event(event_id) is None


async def test_wrong_content_hash_is_stored_redacted(server: TestServer) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    event_id, pdu = await _message(hs, remote, room_id, body="original")
    # The signature covers the redacted form only, so it still verifies; the hash does not.
    pdu["content"]["body"] = "tampered"
    await remote.receive(hs, pdu)
    stored = await hs.store.events.get_event(event_id)
    assert stored is not None
    assert stored.internal.redacted
    assert stored.content == {}
    assert event_id in await _timeline_ids(server, alice, room_id)


async def test_event_failing_its_auth_events_is_rejected(server: TestServer) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    # A user of the remote server who never joined sends a message.
    event_id, pdu = await remote.build(
        hs,
        room_id,
        type="m.room.message",
        sender=remote.user("stranger"),
        content={"msgtype": "m.text", "body": "let me in"},
    )
    with pytest.raises(EventRejected):
        await remote.receive(hs, pdu)
    stored = await hs.store.events.get_event(event_id)
    assert stored is not None and stored.rejected
    assert event_id not in await _timeline_ids(server, alice, room_id)
    assert event_id not in (await hs.store.events.get_forward_extremities(room_id)).event_ids


async def _ban_remote(server: TestServer, alice: TestUser, room_id: str, remote: Remote) -> str:
    status, body = await server.call(
        "POST", f"/rooms/{room_id}/ban", alice, json={"user_id": remote.user("r")}
    )
    assert status == 200, body
    event_id = await server.hs.store.state.get_current_state_event_id(
        room_id, "m.room.member", remote.user("r")
    )
    assert event_id is not None
    return event_id


async def test_event_failing_the_state_before_it_is_rejected(server: TestServer) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    before_ban = await hs.store.state.get_current_state_ids(room_id)
    ban_id = await _ban_remote(server, alice, room_id, remote)
    # Built on the ban (so the state before it has the ban) but citing the old join.
    event_id, pdu = await _message(hs, remote, room_id, prev_events=[ban_id], auth_state=before_ban)
    with pytest.raises(EventRejected):
        await remote.receive(hs, pdu)
    stored = await hs.store.events.get_event(event_id)
    assert stored is not None and stored.rejected


async def test_event_failing_current_state_is_soft_failed(server: TestServer) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    join_id = (await hs.store.events.get_forward_extremities(room_id)).event_ids[0]
    before_ban = await hs.store.state.get_current_state_ids(room_id)
    ban_id = await _ban_remote(server, alice, room_id, remote)
    # The remote had not seen the ban: its message follows its own join.
    event_id, pdu = await _message(
        hs, remote, room_id, prev_events=[join_id], auth_state=before_ban
    )
    await remote.receive(hs, pdu)
    stored = await hs.store.events.get_event(event_id)
    assert stored is not None
    assert stored.internal.soft_failed and not stored.rejected
    # Stored with state, but not an extremity, not the current state, not shown to clients.
    assert await hs.store.state.get_state_ids_at_event(event_id) is not None
    assert (await hs.store.events.get_forward_extremities(room_id)).event_ids == [ban_id]
    timeline = await _timeline_ids(server, alice, room_id)
    assert ban_id in timeline and event_id not in timeline
    status, _ = await server.call("GET", f"/rooms/{room_id}/event/{event_id}", alice)
    assert status == 404
    status, body = await server.call("GET", f"/rooms/{room_id}/messages?dir=b", alice)
    assert status == 200 and event_id not in [e["event_id"] for e in body["chunk"]]
    # Our next local event does not build on it.
    status, body = await server.call(
        "PUT",
        f"/rooms/{room_id}/send/m.room.message/t1",
        alice,
        json={"body": "x", "msgtype": "m.text"},
    )
    assert status == 200
    local = await hs.store.events.get_event(body["event_id"])
    assert local is not None and local.prev_event_ids() == (ban_id,)


async def test_gap_is_filled_with_get_missing_events(server: TestServer) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    room_version = get_room_version((await hs.store.rooms.get_room(room_id)).room_version)
    hs.received_events.fetcher.client = RemoteRequester(remote, room_version)
    first_id, _first = await _message(hs, remote, room_id, body="one")
    second_id, _second = await _message(hs, remote, room_id, body="two", prev_events=[first_id])
    third_id, third = await _message(hs, remote, room_id, body="three", prev_events=[second_id])
    await remote.receive(hs, third)  # only the newest arrives
    assert any("/get_missing_events/" in path for _m, path in remote.requests)
    timeline = await _timeline_ids(server, alice, room_id)
    assert [i for i in timeline if i in (first_id, second_id, third_id)] == [
        first_id,
        second_id,
        third_id,
    ]
    assert (await hs.store.events.get_forward_extremities(room_id)).event_ids == [third_id]


async def test_prev_still_missing_takes_the_state_from_the_origin(server: TestServer) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    room_version = get_room_version((await hs.store.rooms.get_room(room_id)).room_version)
    requester = RemoteRequester(remote, room_version)
    hs.received_events.fetcher.client = requester
    state = await hs.store.state.get_current_state_ids(room_id)
    # The remote user changes its display name in an event we never get.
    member_id, _ = await remote.build(
        hs,
        room_id,
        type="m.room.member",
        sender=remote.user("r"),
        state_key=remote.user("r"),
        content={"membership": "join", "displayname": "Arr"},
    )
    requester.state_before[member_id] = state
    # get_missing_events will not return it: pretend the remote only knows its ID.
    pdu_of_member = remote.events.pop(member_id)

    async def event_lookup(destination: str, path: str, query: Any = None, **_: Any) -> Any:
        remote.events[member_id] = pdu_of_member
        try:
            return await RemoteRequester.get_json(requester, destination, path, query)
        finally:
            remote.events.pop(member_id, None)

    requester.get_json = event_lookup  # type: ignore[method-assign]
    remote.events[member_id] = pdu_of_member
    msg_id, msg = await _message(hs, remote, room_id, prev_events=[member_id])
    remote.events.pop(member_id)
    await remote.receive(hs, msg)
    assert any("/state_ids/" in path for _m, path in remote.requests)
    outlier = await hs.store.events.get_event(member_id)
    assert outlier is not None and outlier.internal.outlier
    # The state before the message includes the display name change.
    before = await hs.store.state.get_state_ids_at_event(msg_id, before=True)
    assert before is not None and before[("m.room.member", remote.user("r"))] == member_id
    assert msg_id in await _timeline_ids(server, alice, room_id)


async def test_fork_is_resolved_into_current_state(server: TestServer) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    join_id = (await hs.store.events.get_forward_extremities(room_id)).event_ids[0]
    join_state = await hs.store.state.get_current_state_ids(room_id)
    status, body = await server.call(
        "PUT", f"/rooms/{room_id}/state/m.room.topic", alice, json={"topic": "local branch"}
    )
    assert status == 200
    topic_id = body["event_id"]
    # Meanwhile the remote user changed its name on top of its join.
    member_id, pdu = await remote.build(
        hs,
        room_id,
        type="m.room.member",
        sender=remote.user("r"),
        state_key=remote.user("r"),
        content={"membership": "join", "displayname": "Remote"},
        prev_events=[join_id],
        auth_state=join_state,
    )
    await remote.receive(hs, pdu)
    extremities = await hs.store.events.get_forward_extremities(room_id)
    assert sorted(extremities.event_ids) == sorted([topic_id, member_id])
    current = await hs.store.state.get_current_state_ids(room_id)
    assert current[("m.room.topic", "")] == topic_id
    assert current[("m.room.member", remote.user("r"))] == member_id
    # The next local event merges the two branches.
    status, body = await server.call(
        "PUT",
        f"/rooms/{room_id}/send/m.room.message/t2",
        alice,
        json={"body": "x", "msgtype": "m.text"},
    )
    assert status == 200
    merge = await hs.store.events.get_event(body["event_id"])
    assert merge is not None and sorted(merge.prev_event_ids()) == sorted([topic_id, member_id])


async def test_tombstone_hook_is_called(server: TestServer) -> None:
    hs = server.hs
    alice, room_id, remote = await _setup(server)
    # Give the remote user power to send the tombstone.
    status, pl = await server.call("GET", f"/rooms/{room_id}/state/m.room.power_levels", alice)
    pl.setdefault("users", {})[remote.user("r")] = 150
    status, _ = await server.call(
        "PUT", f"/rooms/{room_id}/state/m.room.power_levels", alice, json=pl
    )
    assert status == 200
    seen: list[tuple[str, Event]] = []

    async def hook(hook_room_id: str, event: Event) -> None:
        seen.append((hook_room_id, event))

    hs.received_events.tombstone_hook = hook
    event_id, pdu = await remote.build(
        hs,
        room_id,
        type="m.room.tombstone",
        sender=remote.user("r"),
        state_key="",
        content={"body": "moved", "replacement_room": "!new:" + remote.name},
    )
    await remote.receive(hs, pdu)
    assert [(r, e.event_id) for r, e in seen] == [(room_id, event_id)]


async def _remote_room(server: TestServer, remote: Remote) -> tuple[Any, BatchBuilder]:
    """A v12 room made by the remote's user (public), built and signed as the remote would."""
    room_version = get_room_version("12")
    batch = BatchBuilder(room_version, Signer(remote.name, remote.signing_key), None)
    creator = remote.user("r")
    batch.add(EventDraft("m.room.create", creator, {"room_version": "12"}, state_key=""))
    batch.add(EventDraft("m.room.member", creator, {"membership": "join"}, state_key=creator))
    batch.add(EventDraft("m.room.power_levels", creator, {"users": {}}, state_key=""))
    batch.add(EventDraft("m.room.join_rules", creator, {"join_rule": "public"}, state_key=""))
    remote.learn(batch.events, room_version)
    return room_version, batch


def _our_join(server: TestServer, room_version: Any, batch: BatchBuilder, user_id: str) -> Event:
    return build_event(
        room_version,
        server.hs.signer,
        EventDraft("m.room.member", user_id, {"membership": "join"}, state_key=user_id),
        room_id=batch.room_id,
        state=batch.state,
        prev_events=batch.extremities,
        origin_server_ts=server.hs.clock(),
    )


async def test_persist_joined_room_makes_the_remote_room_ours(server: TestServer) -> None:
    hs = server.hs
    bob = await server.register("bob")
    remote = Remote()
    await remote.seed_key(hs)
    room_version, batch = await _remote_room(server, remote)
    room_id = batch.room_id
    assert room_id is not None
    join = _our_join(server, room_version, batch, bob.user_id)
    state = list(batch.state.values())
    await hs.received_events.persist_joined_room(room_version, join, state, batch.events[:3])
    room = await hs.store.rooms.get_room(room_id)
    assert room is not None and room.room_version == "12" and room.creator == remote.user("r")
    current = await hs.store.state.get_current_state_ids(room_id)
    assert current == {
        **{e.state_tuple: e.event_id for e in state},
        join.state_tuple: join.event_id,
    }
    for event in state:
        stored = await hs.store.events.get_event(event.event_id)
        assert stored is not None and stored.internal.outlier and not stored.rejected
    assert (await hs.store.events.get_forward_extremities(room_id)).event_ids == [join.event_id]
    # The remote's next message, built on our join, is accepted and reaches bob.
    remote.learn([join], room_version)
    event_id, pdu = await _message(hs, remote, room_id)
    await remote.receive(hs, pdu)
    assert event_id in await _timeline_ids(server, bob, room_id)


async def test_persist_joined_room_drops_forged_state(server: TestServer) -> None:
    hs = server.hs
    bob = await server.register("bob")
    remote = Remote()
    await remote.seed_key(hs)
    room_version, batch = await _remote_room(server, remote)
    join = _our_join(server, room_version, batch, bob.user_id)
    state = list(batch.state.values())
    forged = Event(dict(state[-1].pdu), room_version)  # the join rules
    (kid,) = forged.pdu["signatures"][remote.name]
    forged.pdu["signatures"] = {remote.name: {kid: "A" * 86}}
    # Without its (forged) join rules, the room is not public: our join is refused.
    with pytest.raises(EventRejected):
        await hs.received_events.persist_joined_room(
            room_version, join, [*state[:-1], forged], batch.events[:3]
        )
    assert await hs.store.rooms.get_room(batch.room_id or "") is None
    assert await hs.store.events.get_event(forged.event_id) is None
