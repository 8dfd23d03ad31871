"""The event sender on each engine: a genesis committed in one go, events sent on the current
state and extremities, refused events leave nothing, concurrent senders never fork the room."""

from __future__ import annotations

import asyncio

import pytest
from signedjson.key import generate_signing_key

from homeserver.auth.rules import AuthError
from homeserver.crypto.canonical_json import encode_canonical_json
from homeserver.events.builder import Signer
from homeserver.events.draft import EventDraft
from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.sender import EventSender
from homeserver.storage import Store
from tests.builders import build_room

SERVER = "example.org"
ALICE = "@alice:example.org"
BOB = "@bob:example.org"
SIGNER = Signer(SERVER, generate_signing_key("a_test"))


async def make_room(store: Store, version: str = "12") -> str:
    return await build_room(
        store, SIGNER, ALICE, version=version, room_id=f"!r{version}:{SERVER}", now=1000
    )


@pytest.mark.parametrize("version", ["1", "3", "10", "12"])
async def test_send_builds_on_current_state(store: Store, version: str):
    room_id = await make_room(store, version)
    sender = EventSender(store, SIGNER)
    join = await sender.send(room_id, EventDraft("m.room.member", BOB, {"membership": "join"}, BOB))
    message = await sender.send(room_id, EventDraft("m.room.message", BOB, {"body": "hi"}))
    assert message.prev_event_ids() == (join.event_id,)
    assert join.event_id in message.auth_event_ids()
    stored = await store.events.get_event(message.event_id)
    assert stored is not None
    assert encode_canonical_json(stored.pdu) == encode_canonical_json(message.pdu)
    state = await store.state.get_current_state_ids(room_id)
    assert state[("m.room.member", BOB)] == join.event_id
    extremities = await store.events.get_forward_extremities(room_id)
    assert extremities.event_ids == [message.event_id] or set(extremities.event_ids) == {
        message.event_id
    }


async def test_refused_event_leaves_nothing(store: Store):
    room_id = await make_room(store)
    sender = EventSender(store, SIGNER)
    before = await store.events.get_max_stream_ordering()
    with pytest.raises(AuthError):
        await sender.send(room_id, EventDraft("m.room.message", BOB, {"body": "not joined"}))
    assert await store.events.get_max_stream_ordering() == before


async def test_concurrent_senders_do_not_fork(store: Store):
    room_id = await make_room(store)
    sender = EventSender(store, SIGNER)
    drafts = [EventDraft("m.room.message", ALICE, {"body": str(i)}) for i in range(8)]
    await asyncio.gather(*(sender.send(room_id, d) for d in drafts))
    extremities = await store.events.get_forward_extremities(room_id)
    assert len(extremities.event_ids) == 1


def test_every_version_is_known():
    assert len(KNOWN_ROOM_VERSIONS) == 12
