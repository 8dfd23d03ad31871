"""Group commit: ``run_in_transaction(..., shared_commit=True)`` transactions that reach the
SQLite writer in the same turn of the loop share one COMMIT, and each still commits whole or not
at all, with its own outcome. PostgreSQL ignores the flag: the same tests check the outcomes
there, and only SQLite checks that a COMMIT was shared."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from homeserver.storage import Database, Transaction
from homeserver.storage.engine_sqlite import MAX_SHARED_COMMIT, SqliteDatabase

pytestmark = pytest.mark.usefixtures("kv_table")

#: stands in for a request's log context: after-commit callbacks must see their own request's.
REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="-")


class Refused(Exception):
    pass


@pytest.fixture
async def kv_table(database: Database) -> AsyncIterator[None]:
    async with database.transaction("setup") as txn:
        await txn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    yield
    # PostgreSQL test schemas are pooled: leave nothing of ours behind.
    async with database.transaction("teardown") as txn:
        for table in ("kv", "child", "parent"):
            await txn.execute(f"DROP TABLE IF EXISTS {table}")


async def _keys(db: Database) -> list[str]:
    return [row[0] for row in await db.fetchall("SELECT k FROM kv ORDER BY k")]


def _shared(db: Database) -> tuple[int, int]:
    if isinstance(db, SqliteDatabase):
        return db.shared_commits, db.shared_commit_members
    return (0, 0)


async def _insert(txn: Transaction, key: str, runs: list[str]) -> str:
    runs.append(key)
    await txn.execute("INSERT INTO kv (k, v) VALUES (?, ?)", key, 1)
    return key.upper()


async def _between_a_and_b(
    database: Database, name: str, fn: Callable[[Transaction], Awaitable[None]], runs: list[str]
) -> object:
    """Run ``fn`` between two shared-commit inserts of "a" and "b", which must both commit
    whatever becomes of it; returns its result or exception."""
    outcomes = await asyncio.gather(
        database.run_in_transaction("put", _insert, "a", runs, shared_commit=True),
        database.run_in_transaction(name, fn, shared_commit=True),
        database.run_in_transaction("put", _insert, "b", runs, shared_commit=True),
        return_exceptions=True,
    )
    assert outcomes[0] == "A" and outcomes[2] == "B"
    assert await _keys(database) == ["a", "b"]
    return outcomes[1]


async def test_transactions_of_one_turn_share_a_commit(database: Database) -> None:
    runs: list[str] = []
    keys = [f"k{i}" for i in range(5)]
    results = await asyncio.gather(
        *(
            database.run_in_transaction("put", _insert, key, runs, shared_commit=True)
            for key in keys
        )
    )
    assert results == [key.upper() for key in keys]
    assert await _keys(database) == keys
    assert sorted(runs) == keys  # each ran once
    assert database.stats["put"].count == 5
    if isinstance(database, SqliteDatabase):
        assert _shared(database) == (1, 5)


async def test_one_transaction_alone_commits_at_once(database: Database) -> None:
    runs: list[str] = []
    assert await database.run_in_transaction("put", _insert, "solo", runs, shared_commit=True)
    assert await _keys(database) == ["solo"]
    assert _shared(database) == (0, 0)


async def test_a_member_that_raises_fails_alone(database: Database) -> None:
    """Its writes are undone; the others commit (after running again, alone)."""
    runs: list[str] = []

    async def refuse_after_writing(txn: Transaction) -> None:
        runs.append("bad")
        await txn.execute("INSERT INTO kv (k, v) VALUES (?, ?)", "bad", 1)
        raise Refused

    outcome = await _between_a_and_b(database, "bad", refuse_after_writing, runs)
    assert isinstance(outcome, Refused)
    assert database.stats["put"].count == 2
    assert database.stats["bad"].failures == 1
    if isinstance(database, SqliteDatabase):
        # "a" and "bad" ran in the group, which rolled back, then alone ("bad" saw a's
        # writes: its error might have been theirs); "b", behind the failure, went straight
        # to a transaction of its own
        assert sorted(runs) == ["a", "a", "b", "bad", "bad"]
        assert _shared(database) == (0, 0)


async def test_the_first_members_error_is_its_own(database: Database) -> None:
    """Nothing ran before the first member: its error is final, not run again."""
    runs: list[str] = []

    async def refuse(txn: Transaction) -> None:
        runs.append("bad")
        raise Refused

    outcomes = await asyncio.gather(
        database.run_in_transaction("bad", refuse, shared_commit=True),
        database.run_in_transaction("put", _insert, "a", runs, shared_commit=True),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], Refused) and outcomes[1] == "A"
    assert runs == ["bad", "a"]
    assert database.stats["bad"].failures == 1
    assert await _keys(database) == ["a"]


async def test_a_failed_shared_commit_leaves_each_its_own_outcome(database: Database) -> None:
    """A constraint checked only at COMMIT fails the shared COMMIT: everyone runs again alone,
    and only the transaction that broke it fails."""
    async with database.transaction("setup") as txn:
        await txn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        await txn.execute(
            "CREATE TABLE child (id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
    runs: list[str] = []

    async def orphan(txn: Transaction) -> None:
        await txn.execute("INSERT INTO child (id) VALUES (?)", 42)

    outcome = await _between_a_and_b(database, "orphan", orphan, runs)
    assert isinstance(outcome, Exception)
    assert await database.fetchall("SELECT id FROM child") == []


async def test_a_waiter_cancelled_after_its_writes_still_commits(database: Database) -> None:
    """The writes are the group's: they commit with it, and so do the after-commit callbacks
    (the caches they fill must match the data) even though nobody waits for the result."""
    if not isinstance(database, SqliteDatabase):
        pytest.skip("PostgreSQL runs each transaction alone: a cancelled one rolls back")
    called: list[str] = []

    async def put_with_callback(txn: Transaction, key: str) -> None:
        await txn.execute("INSERT INTO kv (k, v) VALUES (?, ?)", key, 1)
        txn.call_after_commit(lambda: called.append(key))

    first = asyncio.ensure_future(
        database.run_in_transaction("put", put_with_callback, "a", shared_commit=True)
    )
    second = asyncio.ensure_future(
        database.run_in_transaction("put", put_with_callback, "b", shared_commit=True)
    )
    await asyncio.sleep(0)  # both have run their statements and wait for the COMMIT
    first.cancel()
    await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await _keys(database) == ["a", "b"]
    assert sorted(called) == ["a", "b"]


async def test_a_member_cancelled_mid_way_rolls_back_only_itself(database: Database) -> None:
    started = asyncio.Event()
    runs: list[str] = []

    async def slow(txn: Transaction) -> None:
        await txn.execute("INSERT INTO kv (k, v) VALUES (?, ?)", "slow", 1)
        started.set()
        await asyncio.sleep(30)

    slow_task = asyncio.ensure_future(database.run_in_transaction("slow", slow, shared_commit=True))
    await started.wait()
    other = asyncio.ensure_future(
        database.run_in_transaction("put", _insert, "a", runs, shared_commit=True)
    )
    await asyncio.sleep(0.01)
    slow_task.cancel()
    assert await other == "A"
    with pytest.raises(asyncio.CancelledError):
        await slow_task
    assert await _keys(database) == ["a"]


async def test_after_commit_callbacks_run_in_their_own_context(database: Database) -> None:
    seen: dict[str, str] = {}

    async def put(txn: Transaction, key: str) -> None:
        await txn.execute("INSERT INTO kv (k, v) VALUES (?, ?)", key, 1)
        txn.call_after_commit(lambda: seen.__setitem__(key, REQUEST.get()))

    async def request(key: str) -> None:
        REQUEST.set(f"req-{key}")
        await database.run_in_transaction("put", put, key, shared_commit=True)

    await asyncio.gather(*(request(k) for k in "abc"))
    assert seen == {"a": "req-a", "b": "req-b", "c": "req-c"}


async def test_plain_transactions_wait_for_the_group(database: Database) -> None:
    if not isinstance(database, SqliteDatabase):
        pytest.skip("PostgreSQL has no commit groups")
    runs: list[str] = []

    async def plain() -> list[str]:
        async with database.transaction("plain") as txn:
            return [row[0] for row in await txn.fetchall("SELECT k FROM kv ORDER BY k")]

    grouped = [
        asyncio.ensure_future(
            database.run_in_transaction("put", _insert, k, runs, shared_commit=True)
        )
        for k in "ab"
    ]
    await asyncio.sleep(0)
    seen = await plain()
    await asyncio.gather(*grouped)
    assert seen in ([], ["a", "b"])  # before the group or after it, never half of it
    assert await _keys(database) == ["a", "b"]


async def test_nested_shared_transaction_is_refused(database: Database) -> None:
    async def outer(txn: Transaction) -> None:
        await database.run_in_transaction("inner", _insert, "x", [], shared_commit=True)

    with pytest.raises(RuntimeError, match="inside transaction"):
        await database.run_in_transaction("outer", outer, shared_commit=True)
    assert await _keys(database) == []


async def test_a_group_has_a_bounded_size(database: Database) -> None:
    runs: list[str] = []
    keys = [f"k{i:03}" for i in range(MAX_SHARED_COMMIT + 3)]
    await asyncio.gather(
        *(
            database.run_in_transaction("put", _insert, key, runs, shared_commit=True)
            for key in keys
        )
    )
    assert await _keys(database) == keys
    if isinstance(database, SqliteDatabase):
        assert _shared(database) == (2, len(keys))
