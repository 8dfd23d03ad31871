"""Two writers to one room, each on its own connection pool (as two processes would be): the
room lock makes each read the extremities the other left, so the room never forks."""

from __future__ import annotations

import asyncio
import itertools

from homeserver.events.event import Event
from homeserver.storage import Store, Transaction
from tests.conftest import OpenTestDatabase
from tests.storage.helpers import ALICE, StoredRoom


async def _send_locked(store: Store, room: StoredRoom, body: str) -> Event:
    async def send(txn: Transaction) -> Event:
        await store.persister.lock_rooms_txn(txn, [room.room_id])
        extremities = await store.events.get_forward_extremities(room.room_id, txn=txn)
        group = await store.state.get_current_state_group(room.room_id, txn=txn)
        prev = list((await store.events.get_events(extremities.event_ids)).values())
        # Give the other writer every chance to interleave between read and write.
        await asyncio.sleep(0.005)
        event = room.factory.event("m.room.message", ALICE, {"body": body}, prev=prev)
        await store.persist_events_txn(txn, [(event, group)])
        return event

    return await store.db.run_in_transaction("send_message", send)


async def test_concurrent_writers_do_not_fork(
    store: Store, open_test_database: OpenTestDatabase
) -> None:
    room = StoredRoom(store)
    await room.genesis()
    other = Store(await open_test_database())

    async def writer(s: Store, name: str) -> list[Event]:
        return [await _send_locked(s, room, f"{name}{i}") for i in range(8)]

    sent_a, sent_b = await asyncio.gather(writer(store, "a"), writer(other, "b"))

    extremities = await store.events.get_forward_extremities(room.room_id)
    assert len(extremities.event_ids) == 1
    # Every message has exactly one prev event and the depths form one line.
    store.events.clear_cache()
    events = await store.events.get_events(e.event_id for e in sent_a + sent_b)
    ordered = sorted(events.values(), key=lambda e: e.internal.stream_ordering or 0)
    depths = [e.depth for e in ordered]
    assert depths == list(range(depths[0], depths[0] + len(depths)))
    for parent, child in itertools.pairwise(ordered):
        assert child.prev_event_ids() == (parent.event_id,)
    assert extremities.event_ids == [ordered[-1].event_id]


async def test_concurrent_rooms_get_unique_stream_orderings(
    store: Store, open_test_database: OpenTestDatabase
) -> None:
    other = Store(await open_test_database())
    rooms = [StoredRoom(s, "12") for s in (store, other, store, other)]
    await asyncio.gather(*(r.genesis() for r in rooms))

    async def chatter(room: StoredRoom) -> None:
        for i in range(5):
            await room.send("m.room.message", content={"body": str(i)})

    await asyncio.gather(*(chatter(r) for r in rooms))
    rows = await store.db.fetchall("SELECT stream_ordering FROM events ORDER BY stream_ordering")
    assert [r[0] for r in rows] == list(range(1, 4 * (3 + 5) + 1))


async def test_concurrent_writers_of_the_same_outliers(
    store: Store, open_test_database: OpenTestDatabase
) -> None:
    """Two requests storing the same auth chain as outliers of a room we have no row for (two
    joins through other servers at once): both succeed and the events are stored once."""
    factory = StoredRoom(store).factory  # builds events only: the room gets no row
    create = factory.create(ALICE)
    join = factory.member(ALICE, "join", prev=[create], auth=[create])
    events = [create, join]
    other = Store(await open_test_database())

    def outliers() -> list[tuple[Event, None]]:
        batch: list[tuple[Event, None]] = []
        for event in events:
            copy = Event(dict(event.pdu), event.room_version, event_id=event.event_id)
            copy.internal.outlier = True
            batch.append((copy, None))
        return batch

    for _ in range(5):  # the interleaving is up to the scheduler: give it several chances
        await asyncio.gather(store.persist_events(outliers()), other.persist_events(outliers()))
    stored = await store.events.get_events([e.event_id for e in events])
    assert set(stored) == {e.event_id for e in events}
    assert all(e.internal.outlier for e in stored.values())
