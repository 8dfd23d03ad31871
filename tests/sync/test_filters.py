"""Filters on both engines: stored and inline, checked, owner-only; the timeline limit and
type filters applied by /sync. Plus the pure filter logic."""

from __future__ import annotations

import json

import pytest

from homeserver.app import Homeserver
from homeserver.errors import BadRequest
from homeserver.sync.filters import EventFilter, SyncFilter, check_filter
from tests.builders import make_room, say
from tests.harness import TestServer
from tests.sync.helpers import sync, timeline_bodies


async def test_create_get_and_use_a_stored_filter(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    definition = {"room": {"timeline": {"limit": 2}, "state": {"lazy_load_members": True}}}
    status, body = await server.call(
        "POST", f"/user/{alice.user_id}/filter", alice, json=definition
    )
    assert status == 200, body
    filter_id = body["filter_id"]
    assert isinstance(filter_id, str)
    status, stored = await server.call("GET", f"/user/{alice.user_id}/filter/{filter_id}", alice)
    assert (status, stored) == (200, definition)

    room_id = await make_room(hs, alice.user_id)
    for i in range(4):
        await say(hs, room_id, alice.user_id, f"m{i}")
    for value in (filter_id, json.dumps(definition)):
        response = await sync(server, alice, filter=value)
        room = response["rooms"]["join"][room_id]
        assert timeline_bodies(response, room_id) == ["m2", "m3"]
        assert room["timeline"]["limited"] is True


async def test_type_filter_keeps_filling_the_timeline(server: TestServer, hs: Homeserver):
    alice = await server.register("alice")
    room_id = await make_room(hs, alice.user_id)
    for i in range(3):
        await say(hs, room_id, alice.user_id, f"m{i}")
    flt = json.dumps({"room": {"timeline": {"types": ["m.room.message"], "limit": 2}}})
    response = await sync(server, alice, filter=flt)
    events = response["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["content"]["body"] for e in events] == ["m1", "m2"]
    not_rooms = json.dumps({"room": {"not_rooms": [room_id]}})
    assert (await sync(server, alice, filter=not_rooms))["rooms"]["join"] == {}


async def test_filter_errors(server: TestServer):
    alice = await server.register("alice")
    bob = await server.register("bob")
    path = f"/user/{alice.user_id}/filter"
    for bad in ([], {"room": {"timeline": {"limit": "ten"}}}, {"event_format": "xml"}):
        status, body = await server.call("POST", path, alice, json=bad)
        assert (status, body["errcode"]) == (400, "M_BAD_JSON"), bad
    status, body = await server.call("POST", path, alice, data=b"{nope")
    assert (status, body["errcode"]) == (400, "M_NOT_JSON")
    status, body = await server.call("POST", path, bob, json={})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, created = await server.call("POST", path, alice, json={})
    assert status == 200
    status, body = await server.call("GET", f"{path}/{created['filter_id']}", bob)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    for unknown in ("999999", "abc", "99999999999999999999999"):
        status, body = await server.call("GET", f"{path}/{unknown}", alice)
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    # Someone else's filter ID is not yours.
    status, body = await server.call(
        "GET", f"/user/{bob.user_id}/filter/{created['filter_id']}", bob
    )
    assert status == 404
    body = await sync(server, alice, expect=400, filter="999999")
    assert body["errcode"] == "M_INVALID_PARAM"
    body = await sync(server, alice, expect=400, filter="{bad json")
    assert body["errcode"] == "M_NOT_JSON"
    body = await sync(server, alice, expect=400, filter='{"room": {"rooms": "x"}}')
    assert body["errcode"] == "M_BAD_JSON"


def test_event_filter_globs_and_senders():
    f = EventFilter(
        {"types": ["m.room.*"], "not_types": ["m.room.member"], "not_senders": ["@x:y"]}
    )
    assert f.allows("m.room.message", "@a:y")
    assert not f.allows("m.room.member", "@a:y")
    assert not f.allows("m.reaction", "@a:y")
    assert not f.allows("m.room.message", "@x:y")
    assert EventFilter({"types": ["*"]}).allows("anything")
    assert not EventFilter({"types": []}).allows("m.room.message")
    assert EventFilter({"contains_url": True}).allows("t", content={"url": "mxc://a/b"})
    assert not EventFilter({"contains_url": True}).allows("t", content={})


def test_sync_filter_defaults_and_limits():
    assert SyncFilter({}).timeline_limit == 10
    assert SyncFilter({"room": {"timeline": {"limit": 0}}}).timeline_limit == 0
    assert SyncFilter({"room": {"timeline": {"limit": 10**12}}}).timeline_limit == 1000
    assert SyncFilter({"room": {"include_leave": True}}).include_leave
    for bad in (
        {"room": {"timeline": {"limit": -1}}},
        {"room": {"timeline": {"limit": True}}},
        {"room": {"include_leave": "yes"}},
        {"account_data": {"types": [1]}},
        {"event_fields": "content"},
        {"room": []},
    ):
        with pytest.raises(BadRequest):
            check_filter(bad)


@pytest.mark.parametrize(
    ("definition", "judges"),
    [
        ({}, False),
        ({"limit": 1000}, False),
        ({"limit": 5, "lazy_load_members": True}, False),
        ({"types": ["m.room.message"]}, True),
        ({"not_types": []}, True),
        ({"rooms": ["!r:hs"]}, True),
        ({"not_rooms": ["!r:hs"]}, True),
        ({"senders": ["@a:hs"]}, True),
        ({"not_senders": ["@a:hs"]}, True),
        ({"contains_url": True}, True),
    ],
)
def test_event_filter_judges_events_only_with_a_field_allows_reads(
    definition: dict[str, object], judges: bool
):
    # /sync skips allows_event for a filter that does not judge events: such a filter must
    # pass every event.
    event_filter = EventFilter(definition)
    assert event_filter.judges_events is judges
    if not judges:
        for args in (("m.room.message", "@a:hs", "!r:hs", {}), ("x", None, None, {"url": 1})):
            assert event_filter.allows(*args)
