"""The genesis plan: request parsing, event order, presets and power levels per room version."""

from __future__ import annotations

import pytest

from homeserver.errors import BadRequest
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, V10, V11, V12
from homeserver.rooms.create_request import parse_create_room_request
from homeserver.rooms.creation_plan import CreationPolicy, plan_genesis
from homeserver.rooms.presets import EncryptionPolicy

CREATOR = "@alice:example.org"
BOB = "@bob:example.org"


def _plan(body, room_version=V12, policy=None):
    return plan_genesis(
        parse_create_room_request(body),
        room_version=room_version,
        creator=CREATOR,
        server_name="example.org",
        policy=policy or CreationPolicy(),
    )


def _types(plan):
    return [(d.type, d.state_key) for d in plan.drafts]


def _content(plan, event_type, state_key=""):
    [draft] = [d for d in plan.drafts if (d.type, d.state_key) == (event_type, state_key)]
    return draft.content


def test_full_request_follows_the_spec_order():
    plan = _plan(
        {
            "preset": "private_chat",
            "room_alias_name": "lounge",
            "name": "Lounge",
            "topic": "Chat",
            "invite": [BOB],
            "initial_state": [{"type": "m.room.avatar", "content": {"url": "mxc://a/b"}}],
        }
    )
    assert _types(plan) == [
        ("m.room.member", CREATOR),
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
    assert plan.alias == "#lounge:example.org"
    assert _content(plan, "m.room.topic")["m.topic"]["m.text"][0]["body"] == "Chat"


@pytest.mark.parametrize(
    ("preset", "join_rule", "guest_access", "invite_level"),
    [
        ("private_chat", "invite", "can_join", 0),
        ("trusted_private_chat", "invite", "can_join", 0),
        ("public_chat", "public", None, 50),
    ],
)
def test_presets(preset, join_rule, guest_access, invite_level):
    plan = _plan({"preset": preset})
    assert _content(plan, "m.room.join_rules") == {"join_rule": join_rule}
    assert _content(plan, "m.room.history_visibility") == {"history_visibility": "shared"}
    guest = [d for d in plan.drafts if d.type == "m.room.guest_access"]
    assert (guest[0].content["guest_access"] if guest else None) == guest_access
    assert _content(plan, "m.room.power_levels")["invite"] == invite_level


def test_visibility_picks_the_preset():
    assert _content(_plan({"visibility": "public"}), "m.room.join_rules")["join_rule"] == "public"
    assert _content(_plan({}), "m.room.join_rules")["join_rule"] == "invite"
    assert _plan({"visibility": "public"}).publish


@pytest.mark.parametrize("room_version", KNOWN_ROOM_VERSIONS.values(), ids=lambda v: v.identifier)
def test_power_levels_per_version(room_version):
    plan = _plan({"preset": "public_chat"}, room_version)
    power_levels = _content(plan, "m.room.power_levels")
    if room_version.creators_have_infinite_power:
        assert power_levels["users"] == {}
        assert power_levels["events"]["m.room.tombstone"] == 150
        assert "creator" not in plan.create.content
    else:
        assert power_levels["users"] == {CREATOR: 100}
        assert power_levels["events"]["m.room.tombstone"] == 100
    assert ("creator" in plan.create.content) is (not room_version.implicit_room_creator)
    assert plan.create.content["room_version"] == room_version.identifier


@pytest.mark.parametrize("room_version", [V10, V11], ids=["10", "11"])
def test_trusted_private_chat_invitees_at_100_before_v12(room_version):
    plan = _plan({"preset": "trusted_private_chat", "invite": [BOB]}, room_version)
    assert _content(plan, "m.room.power_levels")["users"] == {CREATOR: 100, BOB: 100}
    assert "additional_creators" not in plan.create.content


def test_trusted_private_chat_invitees_become_creators_in_v12():
    plan = _plan(
        {
            "preset": "trusted_private_chat",
            "invite": [BOB],
            "creation_content": {"additional_creators": ["@carol:example.org"]},
        }
    )
    assert plan.create.content["additional_creators"] == ["@carol:example.org", BOB]
    assert _content(plan, "m.room.power_levels")["users"] == {}


def test_override_is_a_shallow_update():
    plan = _plan({"power_level_content_override": {"events": {"m.room.name": 10}, "kick": 10}})
    power_levels = _content(plan, "m.room.power_levels")
    assert power_levels["events"] == {"m.room.name": 10}
    assert power_levels["kick"] == 10


def test_default_override_per_preset_applies_before_the_request_override():
    policy = CreationPolicy(default_power_level_overrides={"private_chat": {"ban": 70, "kick": 70}})
    power_levels = _content(
        _plan({"power_level_content_override": {"kick": 20}}, policy=policy),
        "m.room.power_levels",
    )
    assert (power_levels["ban"], power_levels["kick"]) == (70, 20)


def test_initial_state_power_levels_replace_generated_ones():
    custom = {"users": {CREATOR: 100}, "state_default": 10}
    plan = _plan({"initial_state": [{"type": "m.room.power_levels", "content": custom}]}, V11)
    assert _content(plan, "m.room.power_levels") == custom


def test_name_and_topic_win_over_initial_state():
    plan = _plan(
        {
            "name": "Real",
            "initial_state": [
                {"type": "m.room.name", "content": {"name": "Ignored"}},
                {"type": "m.room.join_rules", "content": {"join_rule": "public"}},
            ],
        }
    )
    assert [d.content for d in plan.drafts if d.type == "m.room.name"] == [{"name": "Real"}]
    assert [d.content for d in plan.drafts if d.type == "m.room.join_rules"] == [
        {"join_rule": "public"}
    ]


@pytest.mark.parametrize(
    ("policy", "preset", "encrypted"),
    [
        (EncryptionPolicy.OFF, "private_chat", False),
        (EncryptionPolicy.INVITE, "private_chat", True),
        (EncryptionPolicy.INVITE, "trusted_private_chat", True),
        (EncryptionPolicy.INVITE, "public_chat", False),
        (EncryptionPolicy.ALL, "public_chat", True),
    ],
)
def test_encryption_policy(policy, preset, encrypted):
    plan = _plan({"preset": preset}, policy=CreationPolicy(encryption=policy))
    assert any(d.type == "m.room.encryption" for d in plan.drafts) is encrypted


def test_initial_state_encryption_wins():
    plan = _plan(
        {"initial_state": [{"type": "m.room.encryption", "content": {"algorithm": "x"}}]},
        policy=CreationPolicy(encryption=EncryptionPolicy.ALL),
    )
    assert [d.content for d in plan.drafts if d.type == "m.room.encryption"] == [{"algorithm": "x"}]


def test_is_direct_marks_invites():
    plan = _plan({"invite": [BOB], "is_direct": True})
    assert _content(plan, "m.room.member", BOB) == {"membership": "invite", "is_direct": True}


BAD_BODIES = [
    ([], "JSON object"),
    ({"visibility": "secret"}, "visibility"),
    ({"visibility": 1}, "visibility"),
    ({"preset": "party"}, "preset"),
    ({"room_alias_name": "a:b"}, "room_alias_name"),
    ({"room_alias_name": ""}, "room_alias_name"),
    ({"name": 5}, "name"),
    ({"topic": []}, "topic"),
    ({"invite": "@bob:example.org"}, "invite"),
    ({"invite": ["bob"]}, "invite[0]"),
    ({"invite_3pid": [{"medium": "email"}]}, "invite_3pid[0]"),
    ({"room_version": 12}, "room_version"),
    ({"creation_content": []}, "creation_content"),
    ({"initial_state": [{"content": {}}]}, "initial_state[0].type"),
    ({"initial_state": [{"type": "m.room.name"}]}, "initial_state[0].content"),
    ({"initial_state": [{"type": "x", "state_key": 1, "content": {}}]}, "state_key"),
    ({"is_direct": "yes"}, "is_direct"),
    ({"power_level_content_override": 3}, "power_level_content_override"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES, ids=[f for _, f in BAD_BODIES])
def test_bad_fields_are_named(body, field):
    with pytest.raises(BadRequest) as info:
        parse_create_room_request(body)
    assert info.value.status == 400
    assert field in info.value.message
