"""Stream positions (``homeserver/storage/stream_ids.py``): allocation, the persisted-up-to
position readers use, and event writes to different rooms that no longer wait for each other.

The out-of-order cases need two write transactions open at once, which only PostgreSQL has
(SQLite runs one writer at a time); those tests skip on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from homeserver.storage import Database, Store, Transaction, stream_ids
from homeserver.storage.stream_ids import (
    ACCOUNT_DATA_STREAM,
    EVENTS_STREAM,
    STREAMS,
    allocate_txn,
    order_lock_key,
    persisted_up_to,
    persisted_up_to_all,
    sweep,
)
from tests.conftest import OpenTestDatabase
from tests.storage.helpers import StoredRoom


class _Abort(Exception):
    pass


class Held:
    """A write transaction run in its own task and held open after ``work`` until ended."""

    def __init__(self, db: Database, work: Callable[[Transaction], Awaitable[Any]]) -> None:
        self.db = db
        self.work = work
        self.result: Any = None
        self._ready = asyncio.Event()
        self._end = asyncio.Event()
        self._commit = True
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Any:
        self.task = asyncio.create_task(self._run())
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({self.task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            ready.cancel()
            self.task.result()  # raises what the work raised
        return self.result

    async def _run(self) -> None:
        async with self.db.transaction("held") as txn:
            self.result = await self.work(txn)
            self._ready.set()
            await self._end.wait()
            if not self._commit:
                raise _Abort

    async def end(self, *, commit: bool = True) -> None:
        assert self.task is not None
        self._commit = commit
        self._end.set()
        with contextlib.suppress(_Abort):
            await self.task


@pytest.fixture(autouse=True)
def _no_background_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers sweep dead rows once a minute; these tests count the rows themselves."""
    monkeypatch.setattr(stream_ids, "_SWEEP_EVERY_SECONDS", float("inf"))


def _postgres_only(db_engine: str) -> None:
    if db_engine != "postgres":
        pytest.skip("two write transactions at once exist only on PostgreSQL")


async def _take(txn: Transaction, stream: str = EVENTS_STREAM, count: int = 1) -> list[int]:
    return await allocate_txn(txn, stream, count)


async def test_positions_ascend_are_readable_after_commit_and_rollbacks_do_not_hold_back(
    database: Database,
) -> None:
    for stream in sorted(STREAMS):
        before = await persisted_up_to(database, stream)
        async with database.transaction("take") as txn:
            first = await _take(txn, stream, 3)
            more = await _take(txn, stream, 2)
        taken = first + more
        assert taken == sorted(set(taken)) and taken[0] > before, stream
        assert await persisted_up_to(database, stream) == taken[-1], stream
    assert await persisted_up_to_all(database) == {
        stream: await persisted_up_to(database, stream) for stream in STREAMS
    }
    # A rolled-back allocation does not hold the stream back.
    with pytest.raises(_Abort):
        async with database.transaction("abandoned") as txn:
            (abandoned,) = await _take(txn)
            raise _Abort
    # Abandoned: readers may pass it (SQLite even hands the number out again).
    assert await persisted_up_to(database, EVENTS_STREAM) >= abandoned - 1
    async with database.transaction("next") as txn:
        (position,) = await _take(txn)
    assert position >= abandoned
    assert await persisted_up_to(database, EVENTS_STREAM) == position


async def test_a_later_position_committed_first_is_not_readable_until_the_earlier_one_ends(
    database: Database, db_engine: str
) -> None:
    """A takes 10, B takes 11, B commits first: persisted-up-to stays at 9 until A commits
    (then 11) — and the same when A rolls back instead."""
    _postgres_only(db_engine)
    for commit_a in (True, False):
        a = Held(database, _take)
        (pos_a,) = await a.start()
        async with database.transaction("b") as txn:
            (pos_b,) = await _take(txn)
        assert pos_b > pos_a
        assert await persisted_up_to(database, EVENTS_STREAM) == pos_a - 1
        assert (await persisted_up_to_all(database))[EVENTS_STREAM] == pos_a - 1
        await a.end(commit=commit_a)
        assert await persisted_up_to(database, EVENTS_STREAM) == pos_b
    assert await database.fetchval("SELECT COUNT(*) FROM stream_positions_in_flight") == 1
    assert await sweep(database) == 1  # the rolled-back writer's row
    assert await database.fetchval("SELECT COUNT(*) FROM stream_positions_in_flight") == 0


async def test_a_dead_writers_row_stops_counting_and_is_swept(
    database: Database, db_engine: str, open_test_database: OpenTestDatabase
) -> None:
    """A process that dies mid-write (its PostgreSQL backend gone) leaves its in-flight row
    behind; readers pass it at once and the sweep deletes it. A live writer's row stays."""
    _postgres_only(db_engine)
    other = await open_test_database(migrate=False)

    async def take_and_name_backend(txn: Transaction) -> tuple[int, int]:
        (position,) = await _take(txn)
        return position, int(await txn.fetchval("SELECT pg_backend_pid()"))

    dying = Held(other, take_and_name_backend)
    dead_position, pid = await dying.start()
    live = Held(database, _take)
    (live_position,) = await live.start()
    assert await persisted_up_to(database, EVENTS_STREAM) == dead_position - 1

    await database.fetchval("SELECT pg_terminate_backend(?)", pid)
    for _ in range(200):
        if await persisted_up_to(database, EVENTS_STREAM) == live_position - 1:
            break
        await asyncio.sleep(0.02)
    assert await persisted_up_to(database, EVENTS_STREAM) == live_position - 1
    assert await sweep(database) == 1
    assert await database.fetchval("SELECT COUNT(*) FROM stream_positions_in_flight") == 1
    await live.end()
    assert await persisted_up_to(database, EVENTS_STREAM) == live_position
    with pytest.raises(Exception):  # noqa: B017 - whatever the lost connection raises
        await dying.end()


async def test_writers_of_one_key_take_positions_in_commit_order(
    store: Store, db_engine: str
) -> None:
    """Account data overwrites a row: a second writer of the same user waits for the first
    (else the row could end with the older position); another user's writer does not."""
    _postgres_only(db_engine)
    user, other_user = "@u:example.org", "@v:example.org"
    first = Held(
        store.db,
        lambda txn: store.account_data.set_account_data_txn(txn, user, "", "m.a", {"n": 1}),
    )
    pos_first = await first.start()
    second = asyncio.create_task(store.account_data.set_account_data(user, "", "m.a", {"n": 2}))
    unrelated = await asyncio.wait_for(
        store.account_data.set_account_data(other_user, "", "m.a", {"n": 3}), 10
    )
    await asyncio.sleep(0.2)
    assert not second.done()
    assert await persisted_up_to(store.db, ACCOUNT_DATA_STREAM) == pos_first - 1
    await first.end()
    pos_second = await asyncio.wait_for(second, 10)
    assert pos_first < unrelated < pos_second
    assert await store.account_data.get_account_data(user, "", "m.a") == {"n": 2}
    changes = await store.account_data.get_changes(user, pos_first, pos_second)
    assert changes.global_data == {"m.a": {"n": 2}}
    assert order_lock_key("account_data", user) != order_lock_key("account_data", other_user)


async def test_event_writes_to_two_rooms_do_not_wait_for_each_other(
    store: Store, db_engine: str
) -> None:
    """One room's persist transaction held open; another room's persist commits meanwhile
    (with the old server-wide lock it waited until the first committed). Readers do not see
    the second room's later ordering until the first ends."""
    _postgres_only(db_engine)
    waits: list[tuple[str, float]] = []
    store.db.lock_wait_observers.append(lambda lock, seconds: waits.append((lock, seconds)))
    held_room, free_room = StoredRoom(store, "12"), StoredRoom(store, "12")
    await held_room.genesis()
    await free_room.genesis()
    message = await held_room.build("m.room.message", content={"body": "slow"})
    group = await store.state.get_current_state_group(held_room.room_id)

    held = Held(store.db, lambda txn: store.persist_events_txn(txn, [(message, group)]))
    held_ordering = (await held.start()).events[0].stream_ordering
    sent = await asyncio.wait_for(free_room.send("m.room.message", content={"body": "fast"}), 10)
    assert sent.internal.stream_ordering > held_ordering
    assert await store.events.get_max_stream_ordering() == held_ordering - 1
    await held.end()
    assert await store.events.get_max_stream_ordering() == sent.internal.stream_ordering
    assert {lock for lock, _ in waits} >= {"room", "stream_id:events"}
    assert all(seconds < 5 for _, seconds in waits)
