"""The batch filter on both engines: the state group it places each event in is the one the
state store records (also across interleaved state changes and from its cache), and judging
many events reads each distinct state group once and the event-to-group mapping in one query."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.app import Homeserver
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.visibility.client import filter_events_for_client, room_access
from tests.builders import make_room


async def _room_with_history(hs: Homeserver, count: int) -> tuple[str, list[Event]]:
    alice, bob = "@alice:test.example", "@bob:test.example"
    room_id = await make_room(hs, alice, history_visibility="joined")
    await hs.sender.send(room_id, EventDraft("m.room.member", bob, {"membership": "join"}, bob))
    sent: list[Event] = []
    for i in range(count):
        if i % 25 == 24:
            draft = EventDraft("m.room.topic", alice, {"topic": f"t{i}"}, "")
        elif i == count // 2:  # bob leaves and comes back: a stretch he may not see
            draft = EventDraft("m.room.member", bob, {"membership": "leave"}, bob)
        elif i == count // 2 + 10:
            draft = EventDraft("m.room.member", bob, {"membership": "join"}, bob)
        else:
            draft = EventDraft("m.room.message", alice, {"body": str(i)})
        sent.append(await hs.sender.send(room_id, draft))
    return room_id, sent


async def test_groups_match_the_state_store(hs: Homeserver):
    room_id, sent = await _room_with_history(hs, 120)
    expected = await hs.store.state.get_state_group_for_events(
        [e.event_id for e in sent], before=True
    )
    keys = [(e.event_id, e.internal.stream_ordering or 0) for e in sent]
    # Cold, then a sparse subset (from the cache and a narrower range), then warm.
    assert await hs.store.visibility.get_state_groups_before(room_id, keys) == expected
    hs.store.visibility.clear_cache()
    sparse = keys[::7]
    found = await hs.store.visibility.get_state_groups_before(room_id, sparse)
    assert found == {k: expected[k] for k, _ in sparse}
    assert await hs.store.visibility.get_state_groups_before(room_id, keys) == expected


async def test_many_events_read_each_group_once(hs: Homeserver, monkeypatch: pytest.MonkeyPatch):
    room_id, sent = await _room_with_history(hs, 200)
    bob = "@bob:test.example"
    access = await room_access(hs.store, room_id, bob)
    assert access is not None
    calls: dict[str, int] = {"groups": 0, "runs": 0}
    read_group = hs.store.state.get_state_group_ids
    read_runs = hs.store.visibility.get_state_runs

    async def counting_group(group: int, **kwargs: Any) -> Any:
        calls["groups"] += 1
        return await read_group(group, **kwargs)

    async def counting_runs(*args: Any) -> Any:
        calls["runs"] += 1
        return await read_runs(*args)

    monkeypatch.setattr(hs.store.state, "get_state_group_ids", counting_group)
    monkeypatch.setattr(hs.store.visibility, "get_state_runs", counting_runs)
    visible = await filter_events_for_client(hs.store, bob, sent, access=access)
    mapping = await hs.store.state.get_state_group_for_events(
        [e.event_id for e in sent], before=True
    )
    assert calls["runs"] == 1
    assert calls["groups"] <= len(set(mapping.values())) < 40
    # bob misses exactly what was sent while he was away (his own leave and join he sees).
    away = {e.event_id for e in sent[101:110]}
    assert {e.event_id for e in visible} == {e.event_id for e in sent} - away
    # Judged again: the mapping comes from the cache, no query.
    await filter_events_for_client(hs.store, bob, sent, access=access)
    assert calls["runs"] == 1
