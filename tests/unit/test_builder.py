"""The event builder: whole genesis sequences of every preset build, sign and pass auth in every
room version; refused drafts raise the auth error; IDs and refs follow the version's format."""

from __future__ import annotations

import pytest
from signedjson.key import generate_signing_key, get_verify_key

from homeserver.auth.rules import AuthError
from homeserver.crypto.signing import (
    PARALLEL_SIGNING_FROM,
    key_id,
    signature_of,
    signatures_of,
)
from homeserver.events.builder import EventDraft, Signer, choose_prev_events
from homeserver.events.event import Event
from homeserver.events.hashes import check_content_hash
from homeserver.events.ids import compute_event_id
from homeserver.events.signing import (
    PLACEHOLDER_SIGNATURE,
    DeferredSignatures,
    verify_event_signature,
)
from homeserver.events.validation import EventValidationError
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, V1, V3, V12, EventIdFormat, RoomVersion
from homeserver.rooms.create_request import parse_create_room_request
from homeserver.rooms.creation_plan import CreationPolicy, plan_genesis
from homeserver.rooms.event_builder import build_event
from homeserver.rooms.sender import BatchBuilder

SERVER = "example.org"
ALICE = "@alice:example.org"
BOB = "@bob:example.org"
SIGNER = Signer(SERVER, generate_signing_key("a_test"))
VERSIONS = list(KNOWN_ROOM_VERSIONS.values())


def opening_drafts(room_version: RoomVersion) -> list[EventDraft]:
    """Alice creates a room and joins it."""
    return [
        EventDraft(
            "m.room.create",
            ALICE,
            {"room_version": room_version.identifier, "creator": ALICE},
            state_key="",
        ),
        EventDraft("m.room.member", ALICE, {"membership": "join"}, state_key=ALICE),
    ]


def assert_checks_out(room_version: RoomVersion, event: Event) -> None:
    """Its content hash, its ID (which the builder takes from the bytes it signed) computed
    anew, and our signature."""
    assert check_content_hash(event.pdu)
    assert event.event_id == compute_event_id(room_version, event.pdu)
    verify_event_signature(
        room_version,
        event.pdu,
        SERVER,
        key_id(SIGNER.signing_key),
        get_verify_key(SIGNER.signing_key),
    )


class Room:
    """Applies built events to a running state, as storage would."""

    def __init__(self, room_version: RoomVersion) -> None:
        self.room_version = room_version
        self.room_id: str | None = None
        self.state: dict[tuple[str, str], Event] = {}
        self.extremities: list[Event] = []
        self.events: list[Event] = []

    def send(self, draft: EventDraft, ts: int = 1_700_000_000_000) -> Event:
        if self.room_id is None and not self.room_version.room_id_is_create_event_hash:
            self.room_id = f"!genesis:{SERVER}"
        event = build_event(
            self.room_version,
            SIGNER,
            draft,
            room_id=self.room_id,
            state=self.state,
            prev_events=self.extremities,
            origin_server_ts=ts + len(self.events),
        )
        if self.room_id is None:
            self.room_id = event.room_id
        if event.is_state():
            self.state[event.state_tuple] = event
        self.extremities = [event]
        self.events.append(event)
        return event


@pytest.mark.parametrize("room_version", VERSIONS, ids=lambda v: v.identifier)
@pytest.mark.parametrize("preset", ["private_chat", "trusted_private_chat", "public_chat"])
def test_every_genesis_builds_and_passes_auth(room_version, preset):
    request = parse_create_room_request(
        {"preset": preset, "name": "n", "topic": "t", "room_alias_name": "a", "invite": [BOB]}
    )
    plan = plan_genesis(
        request,
        room_version=room_version,
        creator=ALICE,
        server_name=SERVER,
        policy=CreationPolicy(),
    )
    room = Room(room_version)
    create = room.send(plan.create)
    for draft in plan.drafts:
        room.send(draft)
    assert len(room.events) == 1 + len(plan.drafts)
    for event in room.events:
        assert event.room_id == room.room_id
        assert_checks_out(room_version, event)
    if room_version.room_id_is_create_event_hash:
        assert room.room_id == "!" + create.event_id[1:]
        assert "room_id" not in create.pdu
        assert all(create.event_id not in e.auth_event_ids() for e in room.events)
    else:
        assert all(create.event_id in e.auth_event_ids() for e in room.events[1:])
    # the bob invite joins and then talks
    room.send(EventDraft("m.room.member", BOB, {"membership": "join"}, state_key=BOB))
    message = room.send(EventDraft("m.room.message", BOB, {"msgtype": "m.text", "body": "hi"}))
    assert message.depth == len(room.events)


@pytest.mark.parametrize(
    ("room_version", "prefix_len"), [(V1, None), (V3, 44), (V12, 44)], ids=["1", "3", "12"]
)
def test_event_id_and_ref_formats(room_version, prefix_len):
    room = Room(room_version)
    room.send(
        EventDraft(
            "m.room.create",
            ALICE,
            {"room_version": room_version.identifier, "creator": ALICE},
            state_key="",
        )
    )
    join = room.send(EventDraft("m.room.member", ALICE, {"membership": "join"}, state_key=ALICE))
    if prefix_len is None:
        assert join.event_id.endswith(":" + SERVER)
        assert isinstance(join.pdu["prev_events"][0], list)
        assert "sha256" in join.pdu["prev_events"][0][1]
    else:
        assert len(join.event_id) == prefix_len
        assert "event_id" not in join.pdu
        assert join.pdu["prev_events"] == [room.events[0].event_id]


def test_refused_draft_raises_auth_error():
    room = Room(V12)
    room.send(EventDraft("m.room.create", ALICE, {"room_version": "12"}, state_key=""))
    room.send(EventDraft("m.room.member", ALICE, {"membership": "join"}, state_key=ALICE))
    with pytest.raises(AuthError):
        room.send(EventDraft("m.room.message", BOB, {"body": "not a member"}))


def test_v11_redaction_keeps_redacts_in_content():
    for room_version, top_level in ((V1, True), (KNOWN_ROOM_VERSIONS["11"], False)):
        room = Room(room_version)
        room.send(
            EventDraft(
                "m.room.create",
                ALICE,
                {"creator": ALICE, "room_version": room_version.identifier},
                state_key="",
            )
        )
        join = room.send(
            EventDraft("m.room.member", ALICE, {"membership": "join"}, state_key=ALICE)
        )
        redaction = room.send(EventDraft("m.room.redaction", ALICE, {}, redacts=join.event_id))
        assert redaction.redacts == join.event_id
        assert ("redacts" in redaction.pdu) is top_level
        assert ("redacts" in redaction.content) is not top_level


def test_prev_events_capped_at_twenty_deepest():
    room = Room(V12)
    room.send(EventDraft("m.room.create", ALICE, {"room_version": "12"}, state_key=""))
    events = [room.events[0]] * 0
    base = room.events[0]
    for depth in range(1, 26):
        events.append(Event(dict(base.pdu, depth=depth), V12))
    chosen = choose_prev_events(events)
    assert len(chosen) == 20
    assert min(e.depth for e in chosen) == 6


@pytest.mark.parametrize("room_version", VERSIONS, ids=lambda v: v.identifier)
def test_deferred_signatures_give_the_same_events(room_version):
    """A batch signed together at the end (ed25519 is deterministic) holds exactly the events
    signed one by one, IDs and references included, in every room version."""

    def batch(deferred: DeferredSignatures | None) -> BatchBuilder:
        ticks = iter(range(1_700_000_000_000, 1_700_000_001_000))
        room_id = None if room_version.room_id_is_create_event_hash else f"!r:{SERVER}"
        built = BatchBuilder(
            room_version, SIGNER, room_id, clock=lambda: next(ticks), deferred=deferred
        )
        for draft in opening_drafts(room_version):
            built.add(draft)
        built.add(EventDraft("m.room.join_rules", ALICE, {"join_rule": "public"}, state_key=""))
        for n in range(40):  # enough to take the parallel path
            user = f"@u{n}:{SERVER}"
            built.add(EventDraft("m.room.member", user, {"membership": "join"}, state_key=user))
        return built

    signed_each = batch(None)
    deferred = DeferredSignatures(SERVER, SIGNER.signing_key)
    signed_later = batch(deferred)
    assert len(deferred) == 43
    placeholder = signed_later.events[5].pdu["signatures"][SERVER][key_id(SIGNER.signing_key)]
    assert placeholder == PLACEHOLDER_SIGNATURE
    deferred.sign()
    assert len(deferred) == 0
    if room_version.event_id_format is not EventIdFormat.OPAQUE_WITH_DOMAIN:
        # (v1 and v2 event IDs are random, so their two batches differ anyway)
        assert [e.pdu for e in signed_later.events] == [e.pdu for e in signed_each.events]
        assert [e.event_id for e in signed_later.events] == [e.event_id for e in signed_each.events]
    for event in signed_later.events:
        assert_checks_out(room_version, event)


def test_many_signatures_come_back_in_order():
    messages = [f"message {n}".encode() for n in range(PARALLEL_SIGNING_FROM * 3 + 1)]
    assert signatures_of(SIGNER.signing_key, messages) == [
        signature_of(SIGNER.signing_key, m) for m in messages
    ]
    assert signatures_of(SIGNER.signing_key, messages[:3]) == [
        signature_of(SIGNER.signing_key, m) for m in messages[:3]
    ]


@pytest.mark.parametrize("room_version", VERSIONS, ids=lambda v: v.identifier)
@pytest.mark.parametrize(
    "content",
    [
        {"body": "plain", "n": 2**53 - 1},
        {"body": "a float", "n": 1e16},  # json writes 1e+16, orjson 1e16
        {"body": "a big int", "n": 2**64},  # beyond what orjson writes
        {"body": "a tuple", "n": (1, 2)},  # not an exact list
    ],
    ids=["plain", "float", "bigint", "tuple"],
)
def test_one_walk_per_event_keeps_every_encoding_exact(room_version, content):
    """The builder walks an event once and tells the encoders whether it is plain; an event
    with anything unusual is encoded the slow way everywhere, and hashes, ID and signature all
    check out as computed anew (or a strict version refuses it, as before)."""
    room = Room(room_version)
    for opening in opening_drafts(room_version):
        room.send(opening)
    draft = EventDraft("m.room.message", ALICE, content)
    unusual = content["n"] != 2**53 - 1
    if room_version.strict_canonical_json and not isinstance(content["n"], tuple) and unusual:
        with pytest.raises(EventValidationError):
            room.send(draft)
        return
    assert_checks_out(room_version, room.send(draft))
