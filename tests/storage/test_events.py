"""Persisting events and reading them back, on both engines."""

from __future__ import annotations

import pytest

from homeserver.crypto.canonical_json import encode_canonical_json
from homeserver.events.event import Event, InternalMetadata
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.storage import NewRoom, Store
from homeserver.storage.errors import UnknownRoomError
from tests.factories import RoomFactory
from tests.storage.helpers import ALICE, StoredRoom

BOB = "@bob:example.org"


@pytest.mark.parametrize("version", sorted(KNOWN_ROOM_VERSIONS, key=int))
async def test_round_trip_byte_identical(store: Store, version: str) -> None:
    room = StoredRoom(store, version)
    genesis = await room.genesis()
    message = await room.send("m.room.message", content={"body": "héllo ☃", "n": 2**53 - 1})
    store.events.clear_cache()  # read from the database, not the cache
    loaded = await store.events.get_events([e.event_id for e in [*genesis, message]])
    assert set(loaded) == {e.event_id for e in [*genesis, message]}
    for original in [*genesis, message]:
        event = loaded[original.event_id]
        assert encode_canonical_json(event.pdu) == encode_canonical_json(original.pdu)
        assert event.room_version is original.room_version
        assert event.room_id == room.room_id
    stored_json = await store.db.fetchval(
        "SELECT json FROM events WHERE event_id = ?", message.event_id
    )
    assert stored_json.encode() == encode_canonical_json(message.pdu)
    assert await store.events.get_event("$missing") is None


async def test_stream_orderings_increase(store: Store) -> None:
    room = StoredRoom(store)
    await room.genesis()
    other = StoredRoom(store, "12")
    await other.genesis()
    for i in range(5):
        await room.send("m.room.message", content={"body": str(i)})
        await other.send("m.room.message", content={"body": str(i)})
    store.events.clear_cache()
    events = await store.events.get_events([e.event_id for e in room.events + other.events])
    orderings = [events[e.event_id].internal.stream_ordering for e in room.events]
    assert orderings == sorted(orderings) and len(set(orderings)) == len(orderings)
    every = sorted(e.internal.stream_ordering for e in events.values())  # type: ignore[type-var]
    assert every == list(range(1, len(every) + 1))
    assert await store.events.get_max_stream_ordering() == every[-1]
    # The in-memory events got their positions after commit.
    assert (
        room.events[-1].internal.stream_ordering
        == events[room.events[-1].event_id].internal.stream_ordering
    )


async def test_persist_result(store: Store) -> None:
    room = StoredRoom(store)
    await room.genesis()
    before = await store.state.get_current_state_group(room.room_id)
    topic = await room.build("m.room.topic", content={"topic": "t"}, state_key="")
    result = await room.persist(topic)
    [persisted] = result.events
    assert persisted.event_id == topic.event_id
    assert persisted.state_group_before == before
    assert persisted.state_group_after != before
    assert result.current_state_group == persisted.state_group_after


async def test_forward_extremities_fork_and_merge(store: Store) -> None:
    room = StoredRoom(store)
    create, _join, power = await room.genesis()
    ext = await store.events.get_forward_extremities(room.room_id)
    assert ext.event_ids == [power.event_id] and ext.max_depth == power.depth

    group = await store.state.get_current_state_group(room.room_id)
    f = room.factory
    a = f.event("m.room.message", ALICE, {"body": "a"}, prev=[power], auth=[create])
    b = f.event("m.room.message", ALICE, {"body": "b"}, prev=[power], auth=[create])
    await store.persist_events([(a, group)])
    await store.persist_events([(b, group)])
    ext = await store.events.get_forward_extremities(room.room_id)
    assert sorted(ext.event_ids) == sorted([a.event_id, b.event_id])
    assert ext.max_depth == power.depth + 1

    merge = f.event("m.room.message", ALICE, {"body": "m"}, prev=[a, b], auth=[create])
    await store.persist_events([(merge, group)])
    ext = await store.events.get_forward_extremities(room.room_id)
    assert ext.event_ids == [merge.event_id] and ext.max_depth == power.depth + 2

    # An event arriving late whose child is already stored does not become an extremity.
    late_parent = f.event("m.room.message", ALICE, {"body": "p"}, prev=[merge], auth=[create])
    child = f.event("m.room.message", ALICE, {"body": "c"}, prev=[late_parent], auth=[create])
    await store.persist_events([(child, group)])
    await store.persist_events([(late_parent, group)])
    ext = await store.events.get_forward_extremities(room.room_id)
    assert ext.event_ids == [child.event_id]


async def test_rejected_and_outlier_flags_round_trip(store: Store) -> None:
    room = StoredRoom(store)
    create, _, power = await room.genesis()
    f = room.factory
    group = await store.state.get_current_state_group(room.room_id)
    rejected = f.event(
        "m.room.topic", BOB, {"topic": "no"}, state_key="", prev=[power], auth=[create]
    )
    rejected.internal = InternalMetadata(rejected_reason="auth_error")
    outlier = f.member(BOB, "invite", target=BOB, prev=[power], auth=[create])
    outlier.internal = InternalMetadata(outlier=True)
    redacted = f.event("m.room.message", ALICE, {}, prev=[power], auth=[create])
    redacted.internal = InternalMetadata(redacted=True)
    result = await store.persist_events([(rejected, group), (outlier, None), (redacted, None)])
    by_id = {p.event_id: p for p in result.events}
    # A rejected state event leaves the state as it was; an outlier has no state at all.
    assert by_id[rejected.event_id].state_group_after == group
    assert by_id[outlier.event_id].state_group_before is None

    store.events.clear_cache()
    loaded = await store.events.get_events([rejected.event_id, outlier.event_id, redacted.event_id])
    assert loaded[rejected.event_id].internal.rejected_reason == "auth_error"
    assert loaded[rejected.event_id].rejected
    assert not loaded[rejected.event_id].internal.outlier
    assert loaded[outlier.event_id].internal.outlier is True
    assert loaded[outlier.event_id].internal.rejected_reason is None
    assert loaded[redacted.event_id].internal.redacted is True
    # Neither the rejected event nor the outlier is an extremity or part of current state.
    ext = await store.events.get_forward_extremities(room.room_id)
    assert ext.event_ids == [redacted.event_id]
    current = await store.state.get_current_state_ids(room.room_id)
    assert ("m.room.topic", "") not in current
    assert ("m.room.member", BOB) not in current
    assert await store.state.get_state_ids_at_event(outlier.event_id) is None


async def test_auth_chain(store: Store) -> None:
    room = StoredRoom(store)
    create, join, power = await room.genesis()
    f = room.factory
    bob_join = f.member(BOB, "join", prev=[power], auth=[create, power])
    await room.persist(bob_join)
    msg = f.event(
        "m.room.message", BOB, {"body": "x"}, prev=[bob_join], auth=[create, power, bob_join]
    )
    await room.persist(msg)
    chain_of = store.events.get_auth_chain_ids
    chain = await chain_of(room.room_id, [msg.event_id])
    assert chain == {create.event_id, join.event_id, power.event_id, bob_join.event_id}
    assert await chain_of(room.room_id, [join.event_id]) == {create.event_id}
    assert await chain_of(room.room_id, [create.event_id]) == set()
    assert await chain_of(room.room_id, [create.event_id], include_given=True) == {create.event_id}
    assert await chain_of(room.room_id, []) == set()
    # The edges are the room's: asked about another room, the event has none.
    assert await chain_of("!elsewhere:test", [msg.event_id]) == set()


async def test_duplicates_are_skipped(store: Store) -> None:
    room = StoredRoom(store)
    _, _, _power = await room.genesis()
    msg = await room.send("m.room.message", content={"body": "once"})
    group = await store.state.get_current_state_group(room.room_id)
    result = await store.persist_events([(msg, group), (msg, None)])
    assert result.events == []
    assert await store.db.fetchval("SELECT COUNT(*) FROM events") == 4
    # A batch that repeats a stored event and continues from it gets the right state.
    nxt = room.factory.event("m.room.name", ALICE, {"name": "n"}, state_key="", prev=[msg])
    result = await store.persist_events([(msg, group), (nxt, None)])
    assert [p.event_id for p in result.events] == [nxt.event_id]
    assert result.events[0].state_group_before == group


async def test_unknown_room_and_bad_batches(store: Store) -> None:
    f = RoomFactory(KNOWN_ROOM_VERSIONS["10"])
    create = f.create(ALICE)
    with pytest.raises(UnknownRoomError):
        await store.persist_events([(create, None)])
    with pytest.raises(ValueError):
        await store.persist_events([])
    room = StoredRoom(store)
    await room.genesis()
    msg = room.factory.event("m.room.message", ALICE, {"body": "x"}, prev=[room.events[-1]])
    with pytest.raises(ValueError, match="no state given"):
        await store.persist_events([(msg, None)])
    assert await store.events.get_event(msg.event_id) is None
    # A new room whose ID differs from the events' is refused before anything is written.
    with pytest.raises(ValueError):
        await store.persist_events([(create, None)], new_room=NewRoom("!other:x", "10", ALICE, 1))


async def test_outlier_for_unknown_room(store: Store) -> None:
    """An invite from another server arrives before we know the room."""
    f = RoomFactory(KNOWN_ROOM_VERSIONS["11"], server="remote.org")
    create = f.create("@carol:remote.org")
    invite = f.member("@carol:remote.org", "invite", target=ALICE, prev=[create], auth=[create])
    invite.internal = InternalMetadata(outlier=True)
    await store.persist_events([(invite, None)])
    store.events.clear_cache()
    loaded = await store.events.get_event(invite.event_id)
    assert loaded is not None and loaded.internal.outlier
    assert await store.rooms.get_room(f.room_id) is None  # type: ignore[arg-type]


async def test_event_cache_returns_same_event(store: Store) -> None:
    room = StoredRoom(store)
    await room.genesis()
    store.events.clear_cache()
    first = await store.events.get_event(room.events[0].event_id)
    second = await store.events.get_event(room.events[0].event_id)
    assert first is second
    assert isinstance(first, Event)
    store.events.invalidate(room.events[0].event_id)
    assert await store.events.get_event(room.events[0].event_id) is not first


async def test_auth_chain_stays_in_its_room(store: Store) -> None:
    """An event that cites another room's event as an auth event (a lying peer: the auth
    rules reject it, but it is stored with its edges) does not lead the walk into that room's
    history, which ``/event_auth`` and ``/state`` would otherwise serve."""
    other = StoredRoom(store)
    other.factory.room_id = "!other:example.org"
    other_create, other_join, other_power = await other.genesis()
    room = StoredRoom(store)
    create, _join, power = await room.genesis()
    f = room.factory
    liar = f.member(BOB, "join", prev=[power], auth=[create, power, other_power])
    await room.persist(liar)
    chain = await store.events.get_auth_chain_ids(room.room_id, [liar.event_id])
    assert other_power.event_id in chain  # the citation itself is the event's own
    # ... but not what that event stands on in its own room.
    assert not chain & {other_create.event_id, other_join.event_id}
