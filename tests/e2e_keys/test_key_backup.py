"""Server-side key backup (/room_keys) through the HTTP API on both engines: versions (create,
current, by number, update, delete, numbers never reused), keys in all three shapes, the spec's
better-key rule, ``etag``/``count``, uploads to an old version, and one user never reaching
another's backup."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from homeserver.e2e.key_backup import KeyBackupService
from homeserver.e2e.key_backup_bodies import (
    MAX_SESSION_DATA_BYTES,
    MAX_SESSIONS_PER_REQUEST,
    better_key,
)
from homeserver.errors import MatrixError
from homeserver.storage.key_backup import BackedUpKey
from tests.harness import TestServer as Server
from tests.harness import TestUser as User

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!room:test.example"


def auth_data(public_key: str = "pubkey") -> dict[str, Any]:
    return {"public_key": public_key, "signatures": {"@alice:test.example": {"ed25519:DEV": "s"}}}


def key(
    first_message_index: int = 0,
    forwarded_count: int = 0,
    is_verified: bool = False,
    tag: str = "a",
) -> dict[str, Any]:
    return {
        "first_message_index": first_message_index,
        "forwarded_count": forwarded_count,
        "is_verified": is_verified,
        "session_data": {"ephemeral": tag, "ciphertext": tag * 4, "mac": tag},
    }


async def create(server: Server, user: User, public_key: str = "pubkey") -> str:
    body = {"algorithm": ALGORITHM, "auth_data": auth_data(public_key)}
    status, answer = await server.call("POST", "/room_keys/version", user, json=body)
    assert status == 200, answer
    return str(answer["version"])


async def put_session(
    server: Server, user: User, version: str, session: str, body: dict[str, Any]
) -> tuple[int, Any]:
    return await server.call(
        "PUT", f"/room_keys/keys/{ROOM}/{session}", user, json=body, params={"version": version}
    )


async def test_versions_lifecycle(server: Server) -> None:
    alice = await server.register("alice")
    # No backup yet: 404 M_NOT_FOUND (matrix-js-sdk asks at every start).
    status, answer = await server.call("GET", "/room_keys/version", alice)
    assert (status, answer["errcode"]) == (404, "M_NOT_FOUND")

    first = await create(server, alice, "k1")
    status, answer = await server.call("GET", "/room_keys/version", alice)
    assert status == 200
    assert answer == {
        "version": first,
        "algorithm": ALGORITHM,
        "auth_data": auth_data("k1"),
        "etag": "0",
        "count": 0,
    }
    second = await create(server, alice, "k2")
    assert int(second) > int(first)
    status, answer = await server.call("GET", "/room_keys/version", alice)
    assert answer["version"] == second
    # The older one can still be read by number.
    status, answer = await server.call("GET", f"/room_keys/version/{first}", alice)
    assert (status, answer["auth_data"]) == (200, auth_data("k1"))

    # Update: only auth_data; the algorithm and a body version must match.
    new_auth = {"algorithm": ALGORITHM, "auth_data": auth_data("k2b"), "version": second}
    assert await server.call("PUT", f"/room_keys/version/{second}", alice, json=new_auth) == (
        200,
        {},
    )
    status, answer = await server.call("GET", f"/room_keys/version/{second}", alice)
    assert answer["auth_data"] == auth_data("k2b")
    wrong_body_version = {**new_auth, "version": first}
    status, answer = await server.call(
        "PUT", f"/room_keys/version/{second}", alice, json=wrong_body_version
    )
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")
    other_algorithm = {"algorithm": "org.example.other", "auth_data": {}}
    status, answer = await server.call(
        "PUT", f"/room_keys/version/{second}", alice, json=other_algorithm
    )
    assert (status, answer["errcode"]) == (400, "M_INVALID_PARAM")

    # Delete the current one: the older one is current again; numbers are never reused.
    await put_session(server, alice, second, "s1", key())
    assert await server.call("DELETE", f"/room_keys/version/{second}", alice) == (200, {})
    for path in (f"/room_keys/version/{second}", "/room_keys/keys"):
        status, answer = await server.call("GET", path, alice, params={"version": second})
        assert (status, answer["errcode"]) == (404, "M_NOT_FOUND")
    status, answer = await server.call("GET", "/room_keys/version", alice)
    assert answer["version"] == first
    assert int(await create(server, alice)) > int(second)
    assert (
        await server.hs.store.db.fetchval(
            "SELECT COUNT(*) FROM e2e_room_keys WHERE version = ?", int(second)
        )
        == 0
    )

    # Unknown or malformed versions name no backup.
    for version in ("999", "abc", "-1", "1.0", " 1"):
        for method in ("GET", "DELETE"):
            status, answer = await server.call(method, f"/room_keys/version/{version}", alice)
            assert (status, answer["errcode"]) == (404, "M_NOT_FOUND"), (method, version)


async def test_keys_replacement_etag_and_count(server: Server) -> None:
    alice = await server.register("alice")
    version = await create(server, alice)
    params = {"version": version}

    # The three shapes of upload.
    status, answer = await put_session(server, alice, version, "s1", key(5, 1, tag="a"))
    assert (status, answer) == (200, {"etag": "1", "count": 1})
    status, answer = await server.call(
        "PUT",
        f"/room_keys/keys/{ROOM}",
        alice,
        json={"sessions": {"s2": key(tag="b")}},
        params=params,
    )
    assert (status, answer) == (200, {"etag": "2", "count": 2})
    status, answer = await server.call(
        "PUT",
        "/room_keys/keys",
        alice,
        json={"rooms": {"!other:test.example": {"sessions": {"s1": key(tag="c")}}}},
        params=params,
    )
    assert (status, answer) == (200, {"etag": "3", "count": 3})

    # A worse copy (higher index) changes nothing, not even the etag; a better one replaces.
    assert await put_session(server, alice, version, "s1", key(9, 0, tag="x")) == (
        200,
        {"etag": "3", "count": 3},
    )
    assert await put_session(server, alice, version, "s1", key(2, 3, tag="d")) == (
        200,
        {"etag": "4", "count": 3},
    )
    # Verified beats a lower index.
    assert await put_session(server, alice, version, "s1", key(7, 7, True, tag="e")) == (
        200,
        {"etag": "5", "count": 3},
    )
    status, answer = await server.call("GET", f"/room_keys/keys/{ROOM}/s1", alice, params=params)
    assert (status, answer) == (200, key(7, 7, True, tag="e"))

    status, answer = await server.call("GET", f"/room_keys/keys/{ROOM}", alice, params=params)
    assert answer == {"sessions": {"s1": key(7, 7, True, tag="e"), "s2": key(tag="b")}}
    status, answer = await server.call("GET", "/room_keys/keys", alice, params=params)
    assert answer == {
        "rooms": {
            ROOM: {"sessions": {"s1": key(7, 7, True, tag="e"), "s2": key(tag="b")}},
            "!other:test.example": {"sessions": {"s1": key(tag="c")}},
        }
    }
    # A room without keys is an empty room; a session without a key is a 404.
    status, answer = await server.call("GET", "/room_keys/keys/!none:x", alice, params=params)
    assert (status, answer) == (200, {"sessions": {}})
    status, answer = await server.call("GET", f"/room_keys/keys/{ROOM}/nope", alice, params=params)
    assert (status, answer["errcode"]) == (404, "M_NOT_FOUND")
    status, answer = await server.call("GET", "/room_keys/version", alice)
    assert (answer["etag"], answer["count"]) == ("5", 3)

    # Deletes: one session, one room, everything; each answers etag and count.
    status, answer = await server.call("DELETE", f"/room_keys/keys/{ROOM}/s2", alice, params=params)
    assert (status, answer) == (200, {"etag": "6", "count": 2})
    status, answer = await server.call("DELETE", f"/room_keys/keys/{ROOM}", alice, params=params)
    assert (status, answer) == (200, {"etag": "7", "count": 1})
    status, answer = await server.call("DELETE", "/room_keys/keys", alice, params=params)
    assert (status, answer) == (200, {"etag": "8", "count": 0})


async def test_uploads_go_only_to_the_current_version(server: Server) -> None:
    alice = await server.register("alice")
    status, answer = await put_session(server, alice, "1", "s1", key())
    assert (status, answer["errcode"]) == (404, "M_NOT_FOUND")
    old = await create(server, alice)
    current = await create(server, alice)
    status, answer = await put_session(server, alice, old, "s1", key())
    assert status == 403
    assert answer["errcode"] == "M_WRONG_ROOM_KEYS_VERSION"
    assert answer["current_version"] == current
    status, answer = await put_session(server, alice, "12345", "s1", key())
    assert (status, answer["errcode"]) == (404, "M_NOT_FOUND")
    # The version parameter is required.
    status, answer = await server.call("PUT", f"/room_keys/keys/{ROOM}/s1", alice, json=key())
    assert (status, answer["errcode"]) == (400, "M_MISSING_PARAM")
    status, answer = await server.call("GET", "/room_keys/keys", alice)
    assert (status, answer["errcode"]) == (400, "M_MISSING_PARAM")
    # Keys and reads of the old version still work (a client may restore from it).
    status, answer = await server.call("GET", "/room_keys/keys", alice, params={"version": old})
    assert (status, answer) == (200, {"rooms": {}})


async def test_one_user_never_reaches_another_users_backup(server: Server) -> None:
    alice = await server.register("alice")
    eve = await server.register("eve")
    version = await create(server, alice)
    await put_session(server, alice, version, "s1", key(tag="secret"))
    params = {"version": version}
    status, answer = await server.call("GET", "/room_keys/version", eve)
    assert status == 404
    for method, path in (
        ("GET", f"/room_keys/version/{version}"),
        ("DELETE", f"/room_keys/version/{version}"),
        ("GET", "/room_keys/keys"),
        ("GET", f"/room_keys/keys/{ROOM}/s1"),
        ("DELETE", "/room_keys/keys"),
    ):
        status, answer = await server.call(method, path, eve, params=params)
        assert (status, answer["errcode"]) == (404, "M_NOT_FOUND"), (method, path)
    status, answer = await put_session(server, eve, version, "s1", key(tag="evil"))
    assert status == 404
    status, answer = await server.call(
        "PUT",
        f"/room_keys/version/{version}",
        eve,
        json={"algorithm": ALGORITHM, "auth_data": auth_data("evil")},
    )
    assert status == 404
    # Alice's backup is untouched; without a token nothing is reachable.
    status, answer = await server.call("GET", f"/room_keys/keys/{ROOM}/s1", alice, params=params)
    assert answer == key(tag="secret")
    status, answer = await server.call("GET", "/room_keys/version")
    assert (status, answer["errcode"]) == (401, "M_MISSING_TOKEN")
    # Deactivating the account deletes the backup, as Synapse does.
    await server.hs.store.users.deactivate_user(alice.user_id)
    assert await server.hs.store.key_backup.get_version(alice.user_id, None) is None
    assert await server.hs.store.db.fetchval("SELECT COUNT(*) FROM e2e_room_keys") == 0


async def test_concurrent_uploads_keep_the_best_copy(server: Server) -> None:
    # Each upload compares and writes under the user's lock: whatever the interleaving, the
    # copy with the lowest first_message_index is the one kept, and only one row exists.
    alice = await server.register("alice")
    version = await create(server, alice)
    answers = await asyncio.gather(
        *(
            put_session(server, alice, version, "s1", key(index, tag=str(index)))
            for index in range(8)
        )
    )
    assert all(status == 200 for status, _ in answers), answers
    assert await server.call(
        "GET", f"/room_keys/keys/{ROOM}/s1", alice, params={"version": version}
    ) == (200, key(0, tag="0"))
    assert (await server.call("GET", "/room_keys/version", alice))[1]["count"] == 1


async def test_versions_and_keys_are_bounded(server: Server) -> None:
    alice = await server.register("alice")
    service = KeyBackupService(server.hs.store, max_versions=2, max_keys=2)
    body = {"algorithm": ALGORITHM, "auth_data": auth_data()}
    await service.create_version(alice.user_id, body)
    version = (await service.create_version(alice.user_id, body))["version"]
    with pytest.raises(MatrixError) as refused:
        await service.create_version(alice.user_id, body)
    assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")

    sessions = {"sessions": {"s1": key(), "s2": key()}}
    assert await service.upload_keys(alice.user_id, version, sessions, ROOM) == {
        "etag": "1",
        "count": 2,
    }
    # Replacing a stored key stays within the limit; a third key does not.
    assert (await service.upload_keys(alice.user_id, version, key(tag="z"), ROOM, "s1"))[
        "count"
    ] == 2
    with pytest.raises(MatrixError) as refused:
        await service.upload_keys(alice.user_id, version, key(), ROOM, "s3")
    assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")
    assert (await service.get_version(alice.user_id, version))["count"] == 2

    # One request carries at most MAX_SESSIONS_PER_REQUEST sessions, each of bounded size.
    too_many = {"sessions": {f"s{i}": key() for i in range(MAX_SESSIONS_PER_REQUEST + 1)}}
    status, answer = await server.call(
        "PUT", f"/room_keys/keys/{ROOM}", alice, json=too_many, params={"version": version}
    )
    assert (status, answer["errcode"]) == (413, "M_TOO_LARGE")
    huge = key()
    huge["session_data"] = {"ciphertext": "x" * (MAX_SESSION_DATA_BYTES + 1)}
    status, answer = await put_session(server, alice, version, "s1", huge)
    assert (status, answer["errcode"]) == (413, "M_TOO_LARGE")


@pytest.mark.parametrize(
    ("stored", "uploaded", "replaces"),
    [
        ((False, 5, 5), (True, 9, 9), True),  # verified wins over everything else
        ((True, 0, 0), (False, 0, 0), False),
        ((False, 5, 0), (False, 4, 9), True),  # then the lower first_message_index
        ((False, 4, 0), (False, 5, 0), False),
        ((True, 4, 0), (True, 5, 0), False),
        ((False, 4, 3), (False, 4, 2), True),  # then the lower forwarded_count
        ((False, 4, 2), (False, 4, 3), False),
        ((False, 3, 3), (False, 4, 0), False),  # not Synapse's looser rule: index first
        ((True, 4, 2), (True, 4, 2), False),  # a tie keeps the stored copy
    ],
)
def test_better_key_rule(
    stored: tuple[bool, int, int], uploaded: tuple[bool, int, int], replaces: bool
) -> None:
    def make(values: tuple[bool, int, int]) -> BackedUpKey:
        return BackedUpKey(values[1], values[2], values[0], "{}")

    assert better_key(make(stored), make(uploaded)) is replaces
