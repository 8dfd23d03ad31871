"""POST /createRoom on both engines: presets, room versions, validation leaving no trace, the
alias and rate-limit errors, the domain event, room-ID collisions and the encryption policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import HomeserverConfig
from homeserver.rooms import creation
from homeserver.rooms.bus import ROOM_CREATED, DomainEvent
from homeserver.rooms.creation import RateLimitPolicy
from tests.harness import TestServer as Server
from tests.harness import make_config
from tests.rooms.api.helpers import room_events, state_content, table_counts

BOB = "@bob:test.example"
CAROL = "@carol:test.example"
GENEROUS = {"rc_room_creation": {"per_second": 1000, "burst_count": 1000}}


@pytest.fixture
def hs_config(tmp_path: Path) -> HomeserverConfig:
    return make_config(tmp_path, **GENEROUS)


async def create(server: Server, user: Any, body: dict[str, Any]) -> str:
    status, response = await server.call("POST", "/createRoom", user, json=body)
    assert status == 200, response
    return response["room_id"]


# --- presets ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "join_rule", "guest_access", "invite_level"),
    [
        ("private_chat", "invite", "can_join", 0),
        ("trusted_private_chat", "invite", "can_join", 0),
        ("public_chat", "public", None, 50),
    ],
)
async def test_presets(
    server: Server, preset: str, join_rule: str, guest_access: str | None, invite_level: int
):
    alice = await server.register("alice")
    room_id = await create(server, alice, {"preset": preset})
    hs = server.hs
    assert (await state_content(hs, room_id, "m.room.join_rules")) == {"join_rule": join_rule}
    assert (await state_content(hs, room_id, "m.room.history_visibility")) == {
        "history_visibility": "shared"
    }
    guest = await state_content(hs, room_id, "m.room.guest_access")
    assert guest == (None if guest_access is None else {"guest_access": guest_access})
    levels = await state_content(hs, room_id, "m.room.power_levels")
    assert levels is not None and levels["invite"] == invite_level
    member = await state_content(hs, room_id, "m.room.member", alice.user_id)
    assert member is not None and member["membership"] == "join"
    room = await hs.store.rooms.get_room(room_id)
    assert room is not None and room.status == "active" and not room.is_public


def test_default_preset_follows_visibility():
    request = creation.parse_body({"visibility": "public"})
    assert str(request.preset) == "public_chat"
    assert str(creation.parse_body({}).preset) == "private_chat"


# --- room versions ----------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1", "3", "6", "10", "11", "12"])
async def test_room_versions_store_the_genesis_in_order(server: Server, version: str):
    alice = await server.register("alice")
    body = {
        "room_version": version,
        "preset": "private_chat",
        "room_alias_name": f"lounge{version}",
        "name": "Lounge",
        "topic": "Chat",
        "invite": [BOB],
        "initial_state": [{"type": "m.room.avatar", "content": {"url": "mxc://a/b"}}],
    }
    status, response = await server.call("POST", "/createRoom", alice, json=body)
    assert status == 200, response
    room_id = response["room_id"]
    assert response["room_alias"] == f"#lounge{version}:test.example"
    events = await room_events(server.hs, room_id)
    assert [(e.type, e.state_key) for e in events] == [
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.power_levels", ""),
        ("m.room.canonical_alias", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.guest_access", ""),
        ("m.room.avatar", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.member", BOB),
    ]
    assert all(e.sender == alice.user_id for e in events)
    create_event, levels = events[0], events[2].content
    assert create_event.content["room_version"] == version
    rv = create_event.room_version
    assert ("creator" in create_event.content) == (not rv.implicit_room_creator)
    if rv.room_id_is_create_event_hash:
        assert room_id == "!" + create_event.event_id[1:]
        assert levels["users"] == {}
        assert levels["events"]["m.room.tombstone"] == 150
    else:
        assert room_id.endswith(":test.example")
        assert levels["users"] == {alice.user_id: 100}
        assert levels["events"]["m.room.tombstone"] == 100
    room = await server.hs.store.rooms.get_room(room_id)
    assert room is not None and room.room_version == version and room.creator == alice.user_id
    status, resolved = await server.call(
        "GET", f"/directory/room/%23lounge{version}%3Atest.example"
    )
    assert status == 200 and resolved["room_id"] == room_id


@pytest.mark.parametrize("version", ["11", "12"])
async def test_trusted_private_chat_invitees(server: Server, version: str):
    alice = await server.register("alice")
    room_id = await create(
        server,
        alice,
        {"preset": "trusted_private_chat", "room_version": version, "invite": [BOB, CAROL]},
    )
    levels = await state_content(server.hs, room_id, "m.room.power_levels")
    create_content = await state_content(server.hs, room_id, "m.room.create")
    assert levels is not None and create_content is not None
    if version == "11":
        assert levels["users"] == {alice.user_id: 100, BOB: 100, CAROL: 100}
        assert "additional_creators" not in create_content
    else:
        assert levels["users"] == {}
        assert create_content["additional_creators"] == [BOB, CAROL]
    for invitee in (BOB, CAROL):
        member = await state_content(server.hs, room_id, "m.room.member", invitee)
        assert member == {"membership": "invite"}


async def test_is_direct_marks_invites(server: Server):
    alice = await server.register("alice")
    room_id = await create(server, alice, {"invite": [BOB], "is_direct": True})
    member = await state_content(server.hs, room_id, "m.room.member", BOB)
    assert member == {"membership": "invite", "is_direct": True}


async def test_public_visibility_publishes_and_alias_resolves(server: Server):
    alice = await server.register("alice")
    room_id = await create(
        server, alice, {"visibility": "public", "room_alias_name": "town", "name": "Town"}
    )
    status, body = await server.call("GET", f"/directory/list/room/{room_id}")
    assert (status, body) == (200, {"visibility": "public"})
    status, body = await server.call("GET", "/publicRooms", alice)
    assert status == 200
    assert [e["room_id"] for e in body["chunk"]] == [room_id]
    assert body["chunk"][0]["canonical_alias"] == "#town:test.example"
    status, body = await server.call("GET", "/directory/room/%23town:test.example")
    assert (status, body) == (200, {"room_id": room_id, "servers": ["test.example"]})


async def test_creator_profile_goes_into_the_join(server: Server):
    alice = await server.register("alice")
    await server.hs.store.profiles.set_field(alice.user_id, "displayname", "Alice")
    room_id = await create(server, alice, {})
    member = await state_content(server.hs, room_id, "m.room.member", alice.user_id)
    assert member is not None and member["displayname"] == "Alice"


async def test_remote_invite_is_queued_for_federation(server: Server):
    alice = await server.register("alice")
    room_id = await create(server, alice, {"invite": ["@dave:remote.example"]})
    rows = await server.hs.store.db.fetchall("SELECT destination, payload FROM federation_outbox")
    assert len(rows) == 1 and rows[0][0] == "remote.example" and room_id in rows[0][1]


async def test_requires_a_token(server: Server):
    status, body = await server.call("POST", "/createRoom", json={})
    assert status == 401 and body["errcode"] == "M_MISSING_TOKEN"


# --- refusals leave no trace ------------------------------------------------------------------
VALID_3PID = {
    "id_server": "id.example",
    "id_access_token": "t",
    "medium": "email",
    "address": "a@b",
}

BAD_FIELDS: list[tuple[str, Any]] = [
    ("visibility", 5),
    ("visibility", "secret"),
    ("preset", 1),
    ("preset", "nope"),
    ("room_alias_name", 5),
    ("room_alias_name", ""),
    ("room_alias_name", "a:b"),
    ("room_alias_name", "a b"),
    ("room_alias_name", "x" * 300),
    ("name", 5),
    ("name", {"a": 1}),
    ("topic", []),
    ("invite", "@bob:test.example"),
    ("invite", [5]),
    ("invite", ["bob"]),
    ("invite", ["@alice:test.example"]),
    ("invite_3pid", "x"),
    ("invite_3pid", [5]),
    ("invite_3pid", [{"id_server": "id.example"}]),
    ("invite_3pid", [VALID_3PID]),
    ("room_version", 12),
    ("creation_content", "x"),
    ("creation_content", {"additional_creators": "@bob:test.example"}),
    ("creation_content", {"additional_creators": ["bob"]}),
    ("initial_state", "x"),
    ("initial_state", [5]),
    ("initial_state", [{"content": {}}]),
    ("initial_state", [{"type": "m.room.x"}]),
    ("initial_state", [{"type": "m.room.x", "state_key": 5, "content": {}}]),
    ("initial_state", [{"type": "m.room.create", "content": {}}]),
    ("initial_state", [{"type": "m.room.member", "state_key": BOB, "content": {}}]),
    ("is_direct", "yes"),
    ("power_level_content_override", "x"),
    ("power_level_content_override", [1]),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
async def test_bad_field_is_refused_without_trace(server: Server, field: str, value: Any):
    alice = await server.register("alice")
    before = await table_counts(server.hs)
    status, body = await server.call("POST", "/createRoom", alice, json={field: value})
    assert status == 400, body
    assert body["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM", "M_MISSING_PARAM")
    assert field in body["error"]
    assert await table_counts(server.hs) == before


@pytest.mark.parametrize("raw", ["{", "[]", '"x"', "5"])
async def test_body_not_an_object(server: Server, raw: str):
    alice = await server.register("alice")
    before = await table_counts(server.hs)
    status, body = await server.call("POST", "/createRoom", alice, data=raw)
    assert status == 400 and body["errcode"] in ("M_NOT_JSON", "M_BAD_JSON")
    assert await table_counts(server.hs) == before


async def test_unsupported_room_version(server: Server):
    alice = await server.register("alice")
    before = await table_counts(server.hs)
    status, body = await server.call("POST", "/createRoom", alice, json={"room_version": "999"})
    assert status == 400
    assert body == {
        "errcode": "M_UNSUPPORTED_ROOM_VERSION",
        "error": "The requested room version is not supported by this server",
    }
    assert await table_counts(server.hs) == before


async def test_alias_in_use(server: Server):
    alice = await server.register("alice")
    await create(server, alice, {"room_alias_name": "taken"})
    before = await table_counts(server.hs)
    status, body = await server.call(
        "POST", "/createRoom", alice, json={"room_alias_name": "taken", "name": "Second"}
    )
    assert status == 400
    assert body == {"errcode": "M_ROOM_IN_USE", "error": "Room alias already taken"}
    assert await table_counts(server.hs) == before


async def test_alias_claimed_during_creation_rolls_the_room_back(
    server: Server, monkeypatch: pytest.MonkeyPatch
):
    """The alias is claimed atomically with the room: if it was taken after the early check,
    the whole room is rolled back."""
    alice = await server.register("alice")
    await create(server, alice, {"room_alias_name": "race"})

    async def skip_check(store: Any, alias: str | None) -> None:
        return None

    monkeypatch.setattr(creation, "check_alias_free", skip_check)
    before = await table_counts(server.hs)
    status, body = await server.call("POST", "/createRoom", alice, json={"room_alias_name": "race"})
    assert (status, body["errcode"]) == (400, "M_ROOM_IN_USE")
    assert await table_counts(server.hs) == before


async def test_invalid_room_state_leaves_nothing(server: Server):
    alice = await server.register("alice")
    before = await table_counts(server.hs)
    override = {"events": {"m.room.name": 200}, "users": {alice.user_id: 50}}
    status, body = await server.call(
        "POST",
        "/createRoom",
        alice,
        json={"room_version": "11", "name": "Nope", "power_level_content_override": override},
    )
    assert status == 400 and body["errcode"] == "M_INVALID_ROOM_STATE"
    assert "m.room." in body["error"]
    assert await table_counts(server.hs) == before


async def test_invalid_power_levels_override_is_invalid_room_state(server: Server):
    alice = await server.register("alice")
    before = await table_counts(server.hs)
    status, body = await server.call(
        "POST",
        "/createRoom",
        alice,
        json={"power_level_content_override": {"users": {BOB: "high"}}},
    )
    assert status == 400 and body["errcode"] == "M_INVALID_ROOM_STATE"
    assert "m.room.power_levels" in body["error"]
    assert await table_counts(server.hs) == before


async def test_oversized_event_is_bad_json(server: Server):
    alice = await server.register("alice")
    before = await table_counts(server.hs)
    status, body = await server.call("POST", "/createRoom", alice, json={"name": "n" * 70_000})
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    assert "m.room.name" in body["error"]
    assert await table_counts(server.hs) == before


async def test_float_in_strict_json_version_is_bad_json(server: Server):
    alice = await server.register("alice")
    before = await table_counts(server.hs)
    state = [{"type": "m.custom", "content": {"x": 1.5}}]
    status, body = await server.call(
        "POST", "/createRoom", alice, json={"room_version": "6", "initial_state": state}
    )
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    assert await table_counts(server.hs) == before


# --- after commit -----------------------------------------------------------------------------
async def test_room_created_is_published_once(server: Server, caplog: pytest.LogCaptureFixture):
    seen: list[DomainEvent] = []
    server.hs.bus.subscribe(seen.append)
    alice = await server.register("alice")
    with caplog.at_level("INFO", logger="homeserver.audit"):
        room_id = await create(server, alice, {"preset": "public_chat", "room_version": "10"})
    await server.call("POST", "/createRoom", alice, json={"room_version": "999"})
    assert seen == [
        DomainEvent(
            ROOM_CREATED,
            {
                "room_id": room_id,
                "creator_id": alice.user_id,
                "preset": "public_chat",
                "room_version": "10",
            },
        )
    ]
    audit = [r.getMessage() for r in caplog.records if r.name == "homeserver.audit"]
    assert len(audit) == 1 and '"event": "room.created"' in audit[0] and room_id in audit[0]
    status, text = await server.call("GET", "/_synapse/metrics")
    assert status == 200
    assert (
        'homeserver_room_operations_total{operation="create",outcome="room_created",'
        'server_name="test.example"} 1.0'
    ) in text
    assert 'synapse_storage_transaction_time_count{desc="create_room"' in text


async def test_room_id_collision_is_retried(server: Server, monkeypatch: pytest.MonkeyPatch):
    alice = await server.register("alice")
    existing = await create(server, alice, {"room_version": "11"})
    existing_events = len(await room_events(server.hs, existing))
    ids = iter([existing, "!fresh:test.example"])
    monkeypatch.setattr(creation, "new_room_id", lambda server_name: next(ids))
    room_id = await create(server, alice, {"room_version": "11", "name": "Second"})
    assert room_id == "!fresh:test.example"
    assert len(await room_events(server.hs, existing)) == existing_events
    assert (await state_content(server.hs, existing, "m.room.name")) is None


async def test_v12_collision_bumps_the_timestamp(server: Server, monkeypatch: pytest.MonkeyPatch):
    alice = await server.register("alice")
    calls: list[str] = []
    real = creation.room_exists_txn

    async def collide_once(txn: Any, room_id: str) -> bool:
        calls.append(room_id)
        return len(calls) == 1 or await real(txn, room_id)

    monkeypatch.setattr(creation, "room_exists_txn", collide_once)
    room_id = await create(server, alice, {"room_version": "12"})
    assert len(calls) == 2 and calls[0] != calls[1] and room_id == calls[1]
    counts = await table_counts(server.hs)
    assert counts["rooms"] == 1


async def test_room_id_collisions_give_up(server: Server, monkeypatch: pytest.MonkeyPatch):
    alice = await server.register("alice")
    existing = await create(server, alice, {"room_version": "11"})
    monkeypatch.setattr(creation, "new_room_id", lambda server_name: existing)
    before = await table_counts(server.hs)
    status, body = await server.call("POST", "/createRoom", alice, json={"room_version": "11"})
    assert status == 500 and body["errcode"] == "M_UNKNOWN"
    assert await table_counts(server.hs) == before


# --- rate limit -------------------------------------------------------------------------------
class TestRateLimit:
    @pytest.fixture
    def hs_config(self, tmp_path: Path) -> HomeserverConfig:
        return make_config(tmp_path, rc_room_creation={"per_second": 0.1, "burst_count": 2})

    async def test_exempt_rooms_neither_count_nor_are_refused(self, server: Server):
        """Rooms the server makes for an admin (room deletion's new room) pass
        ``RateLimitPolicy.EXEMPT``: an empty bucket does not stop them and they take no token."""
        alice = await server.register("alice")
        creation = server.hs.room_creation
        for _ in range(3):
            await creation.create_room(alice.user_id, {}, rate_limit=RateLimitPolicy.EXEMPT)
        await create(server, alice, {})
        await create(server, alice, {})
        await creation.create_room(alice.user_id, {}, rate_limit=RateLimitPolicy.EXEMPT)
        status, body = await server.call("POST", "/createRoom", alice, json={})
        assert status == 429 and body["errcode"] == "M_LIMIT_EXCEEDED"

    async def test_third_room_is_rate_limited(self, server: Server):
        alice = await server.register("alice")
        # A malformed body is refused before the limiter and costs no token.
        status, _ = await server.call("POST", "/createRoom", alice, json={"preset": 5})
        assert status == 400
        await create(server, alice, {})
        await create(server, alice, {})
        before = await table_counts(server.hs)
        response = await server.client.post(
            "/_matrix/client/v3/createRoom",
            json={},
            headers={"Authorization": f"Bearer {alice.access_token}"},
        )
        body = await response.json()
        assert response.status == 429
        assert body["errcode"] == "M_LIMIT_EXCEEDED"
        assert body["error"] == (
            "You have created too many rooms recently. Please wait before creating another."
        )
        assert body["retry_after_ms"] > 0
        assert int(response.headers["Retry-After"]) == -(-body["retry_after_ms"] // 1000)
        assert await table_counts(server.hs) == before
        # Another user has a bucket of their own.
        bob = await server.register("bob")
        await create(server, bob, {})


# --- encryption policy ------------------------------------------------------------------------
class TestEncryptionPolicy:
    @pytest.fixture(params=["off", "invite", "all"])
    def hs_config(self, request: pytest.FixtureRequest, tmp_path: Path) -> HomeserverConfig:
        return make_config(
            tmp_path, encryption_enabled_by_default_for_room_type=request.param, **GENEROUS
        )

    async def test_policy(self, server: Server):
        policy = str(server.hs.config.rooms.encryption_enabled_by_default_for_room_type)
        alice = await server.register("alice")
        private = await create(server, alice, {"preset": "private_chat"})
        public = await create(server, alice, {"preset": "public_chat"})
        private_enc = await state_content(server.hs, private, "m.room.encryption")
        public_enc = await state_content(server.hs, public, "m.room.encryption")
        expected = {"algorithm": "m.megolm.v1.aes-sha2"}
        assert private_enc == (None if policy == "off" else expected)
        assert public_enc == (expected if policy == "all" else None)
        # An m.room.encryption in initial_state wins over the policy.
        custom = {"algorithm": "m.megolm.v1.aes-sha2", "rotation_period_ms": 1000}
        room = await create(
            server,
            alice,
            {"initial_state": [{"type": "m.room.encryption", "content": custom}]},
        )
        assert (await state_content(server.hs, room, "m.room.encryption")) == custom
        types = [e.type for e in await room_events(server.hs, room)]
        assert types.count("m.room.encryption") == 1
