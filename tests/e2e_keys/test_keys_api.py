"""/keys/upload, /keys/query, /keys/claim and /keys/changes through the HTTP API, on both
engines: round trips, one-time keys handed out once (also under concurrent claims), fallback
keys once they run out, and every bad upload refused with a 4xx, never a 500."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from homeserver.e2e.key_validation import MAX_ONE_TIME_KEYS_PER_UPLOAD
from homeserver.streams.tokens import StreamToken
from tests.builders import create_room
from tests.e2e_keys.helpers import Device, claim, query, upload, upload_device
from tests.harness import TestServer as Server
from tests.rooms.upgrade.helpers import join


async def current_token(server: Server) -> str:
    store = server.hs.store
    return str(
        StreamToken(
            events=await store.events.get_max_stream_ordering(),
            device_lists=await store.device_lists.get_position(),
        )
    )


async def test_upload_query_claim_round_trip(server: Server) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    await server.hs.store.users.set_device_display_name(alice.user_id, alice.device_id, "Phone")
    device = Device(alice.user_id, alice.device_id)
    keys = device.device_keys()
    otks = device.one_time_keys(5)
    status, answer = await upload(server, alice, {"device_keys": keys, "one_time_keys": otks})
    assert (status, answer) == (200, {"one_time_key_counts": {"signed_curve25519": 5}})

    result = await query(server, bob, alice.user_id, "@nobody:test.example", "not a user")
    assert result["device_keys"] == {
        alice.user_id: {
            alice.device_id: {**keys, "unsigned": {"device_display_name": "Phone"}},
        },
        "@nobody:test.example": {},
    }
    assert result["failures"] == {}

    claimed = await claim(server, bob, alice)
    # The oldest key first, exactly as uploaded (so its signature verifies for the claimer).
    assert claimed == {"signed_curve25519:AAAA0000": otks["signed_curve25519:AAAA0000"]}
    status, answer = await upload(server, alice, {})
    assert answer == {"one_time_key_counts": {"signed_curve25519": 4}}


async def test_query_of_chosen_devices(server: Server) -> None:
    alice = await server.register("alice")
    await upload_device(server, alice)
    status, answer = await server.call(
        "POST",
        "/keys/query",
        alice,
        json={"device_keys": {alice.user_id: ["NOPE", alice.device_id]}},
    )
    assert status == 200
    assert list(answer["device_keys"][alice.user_id]) == [alice.device_id]


async def test_counts_always_name_signed_curve25519(server: Server) -> None:
    alice = await server.register("alice")
    status, answer = await upload(server, alice, {})
    assert (status, answer) == (200, {"one_time_key_counts": {"signed_curve25519": 0}})
    await upload(server, alice, {"one_time_keys": {"curve25519:K": "plain"}})
    status, answer = await upload(server, alice, {})
    assert answer == {"one_time_key_counts": {"signed_curve25519": 0, "curve25519": 1}}


async def test_identical_reupload_changes_nothing_and_new_keys_replace(server: Server) -> None:
    alice = await server.register("alice")
    device = Device(alice.user_id, alice.device_id)
    keys = device.device_keys()
    lists = server.hs.store.device_lists
    assert (await upload(server, alice, {"device_keys": keys}))[0] == 200
    first = await lists.get_user_position(alice.user_id)
    assert first > 0
    assert (await upload(server, alice, {"device_keys": keys}))[0] == 200
    assert await lists.get_user_position(alice.user_id) == first

    # New identity keys for the same device replace the old ones (as Synapse does), and the
    # change is recorded so other devices fetch them again.
    replacement = Device(alice.user_id, alice.device_id)
    assert (await upload(server, alice, {"device_keys": replacement.device_keys()}))[0] == 200
    assert await lists.get_user_position(alice.user_id) > first
    result = await query(server, alice, alice.user_id)
    stored = result["device_keys"][alice.user_id][alice.device_id]
    assert stored["keys"][f"ed25519:{alice.device_id}"] == replacement.ed25519


async def test_one_time_key_ids_conflicts(server: Server) -> None:
    alice = await server.register("alice")
    device = await upload_device(server, alice)
    keys = device.one_time_keys(3)
    assert (await upload(server, alice, {"one_time_keys": keys}))[1]["one_time_key_counts"] == {
        "signed_curve25519": 3
    }
    # The same keys again (a retried request): ignored.
    status, answer = await upload(server, alice, {"one_time_keys": keys})
    assert (status, answer["one_time_key_counts"]) == (200, {"signed_curve25519": 3})
    # An existing key ID with another key: refused, nothing stored.
    clash = {
        "signed_curve25519:AAAA0000": device.one_time_key("AAAA0000"),
        "signed_curve25519:NEW": device.one_time_key("NEW"),
    }
    status, answer = await upload(server, alice, {"one_time_keys": clash})
    assert status == 400, answer
    assert (await upload(server, alice, {}))[1]["one_time_key_counts"] == {"signed_curve25519": 3}


async def test_exhausted_one_time_keys_fall_back(server: Server) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    device = await upload_device(server, alice, otks=2)
    fallback = device.one_time_key("FB", fallback=True)
    assert (await upload(server, alice, {"fallback_keys": {"signed_curve25519:FB": fallback}}))[
        0
    ] == 200
    e2e = server.hs.store.e2e_keys
    assert await e2e.get_unused_fallback_key_types(alice.user_id, alice.device_id) == [
        "signed_curve25519"
    ]
    got = [await claim(server, bob, alice) for _ in range(4)]
    assert [list(k) for k in got] == [
        ["signed_curve25519:AAAA0000"],
        ["signed_curve25519:AAAA0001"],
        ["signed_curve25519:FB"],
        ["signed_curve25519:FB"],
    ]
    assert got[2]["signed_curve25519:FB"] == fallback
    assert await e2e.get_unused_fallback_key_types(alice.user_id, alice.device_id) == []
    # The same fallback key uploaded again stays used; a new one is unused.
    await upload(server, alice, {"fallback_keys": {"signed_curve25519:FB": fallback}})
    assert await e2e.get_unused_fallback_key_types(alice.user_id, alice.device_id) == []
    new = {"signed_curve25519:FB2": device.one_time_key("FB2", fallback=True)}
    await upload(server, alice, {"fallback_keys": new})
    assert await e2e.get_unused_fallback_key_types(alice.user_id, alice.device_id) == [
        "signed_curve25519"
    ]
    assert list(await claim(server, bob, alice)) == ["signed_curve25519:FB2"]


async def test_concurrent_claims_get_each_key_once(server: Server) -> None:
    alice = await server.register("alice")
    claimers = [await server.register(f"c{i}") for i in range(12)]
    await upload_device(server, alice, otks=10)
    got = await asyncio.gather(*(claim(server, c, alice) for c in claimers))
    key_ids = [key_id for keys in got for key_id in keys]
    assert len(key_ids) == 10 and len(set(key_ids)) == 10
    assert sum(1 for keys in got if not keys) == 2
    assert (await upload(server, alice, {}))[1]["one_time_key_counts"] == {"signed_curve25519": 0}


async def test_claim_of_unknown_devices_and_users(server: Server) -> None:
    alice = await server.register("alice")
    status, answer = await server.call(
        "POST",
        "/keys/claim",
        alice,
        json={
            "one_time_keys": {
                alice.user_id: {"NODEVICE": "signed_curve25519"},
                "@ghost:test.example": {"X": "signed_curve25519"},
            }
        },
    )
    assert (status, answer) == (200, {"one_time_keys": {}, "failures": {}})


async def test_mismatched_and_badly_signed_uploads_refused(server: Server) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    device = Device(alice.user_id, alice.device_id)
    unsigned = device.device_keys()
    del unsigned["signatures"]
    wrong = Device(alice.user_id, alice.device_id).device_keys()
    wrong["keys"] = device.device_keys()["keys"]
    cases: list[tuple[Any, dict[str, Any], int, str]] = [
        (alice, {"device_keys": unsigned}, 400, "M_INVALID_SIGNATURE"),
        (alice, {"device_keys": wrong}, 400, "M_INVALID_SIGNATURE"),
        (bob, {"device_keys": device.device_keys()}, 400, "M_BAD_JSON"),
        (
            alice,
            {"device_keys": Device(alice.user_id, "OTHER").device_keys()},
            400,
            "M_BAD_JSON",
        ),
        (
            alice,
            {
                "device_keys": device.device_keys(),
                "one_time_keys": device.one_time_keys(MAX_ONE_TIME_KEYS_PER_UPLOAD + 1),
            },
            413,
            "M_TOO_LARGE",
        ),
    ]
    for user, body, status, errcode in cases:
        got_status, answer = await upload(server, user, body)
        assert (got_status, answer.get("errcode")) == (status, errcode), body
    # Nothing of the refused uploads was stored.
    result = await query(server, alice, alice.user_id, bob.user_id)
    assert result["device_keys"] == {alice.user_id: {}, bob.user_id: {}}


MALFORMED: list[tuple[str, str, Any]] = [
    ("POST", "/keys/upload", b"not json"),
    ("POST", "/keys/upload", []),
    ("POST", "/keys/upload", {"device_keys": "x"}),
    ("POST", "/keys/upload", {"one_time_keys": {"signed_curve25519:K": {"key": 1}}}),
    ("POST", "/keys/upload", {"fallback_keys": ["x"]}),
    ("POST", "/keys/query", {}),
    ("POST", "/keys/query", {"device_keys": []}),
    ("POST", "/keys/query", {"device_keys": {"@a:test.example": "DEV"}}),
    ("POST", "/keys/query", {"device_keys": {"@a:test.example": [1]}}),
    ("POST", "/keys/query", {"device_keys": {}, "timeout": "soon"}),
    ("POST", "/keys/claim", {}),
    ("POST", "/keys/claim", {"one_time_keys": {"@a:test.example": ["x"]}}),
    ("POST", "/keys/claim", {"one_time_keys": {"@a:test.example": {"D": 5}}}),
    ("POST", "/keys/signatures/upload", []),
    ("POST", "/keys/signatures/upload", {"@a:test.example": {"D": "x"}}),
    ("POST", "/keys/device_signing/upload", {"master_key": "x"}),
    ("POST", "/keys/device_signing/upload", {"self_signing_key": {"user_id": 1}}),
    ("GET", "/keys/changes", None),
    ("GET", "/keys/changes?from=nope", None),
    ("GET", "/keys/changes?from=s1&to=s-1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), MALFORMED)
async def test_malformed_requests_are_400(
    server: Server, method: str, path: str, body: Any
) -> None:
    alice = await server.register("alice")
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
    status, answer = await server.call(method, path, alice, **kwargs)
    assert status == 400, answer
    assert answer["errcode"].startswith("M_")


async def test_nul_in_query_and_claim_is_no_500(server: Server) -> None:
    alice = await server.register("alice")
    status, _ = await server.call(
        "POST", "/keys/query", alice, json={"device_keys": {"@a\x00:test.example": ["D\x00"]}}
    )
    assert status == 200
    status, _ = await server.call(
        "POST",
        "/keys/claim",
        alice,
        json={"one_time_keys": {alice.user_id: {"D\x00": "signed_curve25519"}}},
    )
    assert status == 200


async def test_requests_need_a_token(server: Server) -> None:
    status, answer = await server.call("POST", "/keys/query", json={"device_keys": {}})
    assert (status, answer["errcode"]) == (401, "M_MISSING_TOKEN")


async def test_key_changes_between_tokens(server: Server) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    carol = await server.register("carol")
    room = await create_room(server, alice, preset="public_chat")
    await join(server, room, bob)
    since = await current_token(server)
    await upload_device(server, bob)
    await upload_device(server, carol)  # shares no room with alice
    status, answer = await server.call("GET", "/keys/changes", alice, params={"from": since})
    assert (status, answer) == (200, {"changed": [bob.user_id], "left": []})
    status, answer = await server.call(
        "GET", "/keys/changes", alice, params={"from": since, "to": since}
    )
    assert (status, answer) == (200, {"changed": [], "left": []})
