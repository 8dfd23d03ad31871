"""Which driver errors mean "the database is away" (503, retry later) and which are bugs (500)."""

from __future__ import annotations

import sqlite3
from http import HTTPStatus

import asyncpg
import pytest

from homeserver.errors import MatrixError
from homeserver.storage import Database
from homeserver.storage.engine_postgres import is_unavailable
from homeserver.storage.errors import DatabaseUnavailable
from tests.harness import TestServer as Server

POSTGRES_CASES: list[tuple[str, BaseException, bool]] = [
    ("connection refused", ConnectionRefusedError(111, "Connection refused"), True),
    ("connection reset", ConnectionResetError(104, "reset by peer"), True),
    ("connect timeout", TimeoutError(), True),
    ("connection lost mid-query", asyncpg.ConnectionDoesNotExistError("closed"), True),
    ("server shutting down (57P01)", asyncpg.AdminShutdownError("terminating"), True),
    ("server starting (57P03)", asyncpg.CannotConnectNowError("starting up"), True),
    ("too many connections (53300)", asyncpg.TooManyConnectionsError("too many"), True),
    (
        "asyncpg: connection closed",
        asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the connection is closed"),
        True,
    ),
    ("statement timeout (57014)", asyncpg.QueryCanceledError("canceling statement"), False),
    ("unique violation", asyncpg.UniqueViolationError("duplicate key"), False),
    ("syntax error", asyncpg.PostgresSyntaxError("syntax"), False),
    ("serialization failure", asyncpg.SerializationError("could not serialize"), False),
    (
        "another operation in progress",
        asyncpg.InterfaceError("another operation is in progress"),
        False,
    ),
    (
        # seen when PostgreSQL stops mid-load: the cut connection's protocol state is stuck
        "protocol state after a cut connection",
        asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
        True,
    ),
    ("a bug", KeyError("x"), False),
]


@pytest.mark.parametrize(
    ("error", "unavailable"), [c[1:] for c in POSTGRES_CASES], ids=[c[0] for c in POSTGRES_CASES]
)
def test_postgres_error_classification(error: BaseException, unavailable: bool) -> None:
    assert is_unavailable(error) is unavailable


def test_database_unavailable_is_a_503_matrix_error() -> None:
    error = DatabaseUnavailable()
    assert isinstance(error, MatrixError)
    assert error.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert error.to_json() == {
        "errcode": "M_UNKNOWN",
        "error": "The database is temporarily unavailable",
    }


def _unavailable_error(engine: str) -> Exception:
    if engine == "sqlite":
        return sqlite3.OperationalError("database is locked")
    return asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")


async def test_a_transaction_that_loses_the_database_raises_database_unavailable(
    database: Database, db_engine: str
) -> None:
    with pytest.raises(DatabaseUnavailable) as raised:
        async with database.transaction("lost"):
            raise _unavailable_error(db_engine)
    assert database.stats["lost"].failures == 1
    assert raised.value.__cause__ is not None  # the driver's error is kept for the traceback


async def test_other_errors_pass_through_unchanged(database: Database) -> None:
    with pytest.raises(KeyError):
        async with database.transaction("bug"):
            raise KeyError("bug")
    with pytest.raises(sqlite3.OperationalError):
        async with database.transaction("bad sql"):
            raise sqlite3.OperationalError("no such table: nope")


async def test_a_request_that_loses_the_database_answers_503(
    server: Server, db_engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await server.register("alice")
    status, room = await server.call("POST", "/createRoom", alice, json={})
    assert status == 200
    error = _unavailable_error(db_engine)

    async def lose_the_database(*args: object, **kwargs: object) -> None:
        raise error

    # The failure happens inside the send's transaction, as when PostgreSQL goes away mid-write.
    db = server.hs.store.db
    original = db._engine_transaction

    def failing_transaction(name: str, read_only: bool):  # type: ignore[no-untyped-def]
        manager = original(name, read_only)

        class Failing:
            async def __aenter__(self) -> object:
                txn = await manager.__aenter__()
                monkeypatch.setattr(txn, "execute", lose_the_database)
                return txn

            async def __aexit__(self, *exc: object) -> object:
                return await manager.__aexit__(*exc)

        return Failing()

    monkeypatch.setattr(db, "_engine_transaction", failing_transaction)
    status, body = await server.call(
        "PUT", f"/rooms/{room['room_id']}/send/m.room.message/t1", alice, json={"body": "x"}
    )
    assert status == 503, body
    assert body == {"errcode": "M_UNKNOWN", "error": "The database is temporarily unavailable"}
    monkeypatch.undo()
    status, body = await server.call(
        "PUT", f"/rooms/{room['room_id']}/send/m.room.message/t2", alice, json={"body": "x"}
    )
    assert status == 200, body
