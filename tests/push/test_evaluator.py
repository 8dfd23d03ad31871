"""The pure push-rule evaluator against the spec's conditions and the default ruleset."""

from __future__ import annotations

from typing import Any

from homeserver.push.evaluator import (
    condition_holds,
    context_for,
    evaluate,
    glob_matches,
    is_highlight,
    lookup,
    notifies,
    shared_default_verdict,
)
from homeserver.push.rules import build_ruleset

ME = "@bob:example.org"


def _ctx(content: dict[str, Any], *, type_: str = "m.room.message", **extra: Any):
    event = {"type": type_, "content": content, "sender": "@alice:example.org", "room_id": "!r"}
    event.update(extra.pop("event", {}))
    return context_for(
        event,
        room_member_count=extra.get("members", 3),
        sender_power_level=extra.get("power", 0),
        notification_levels=extra.get("levels"),
    )


def test_globs_and_words():
    assert glob_matches("m.*", "m.room.message")
    assert not glob_matches("m.notice", "m.noticeX")
    assert glob_matches("M.NOTICE", "m.notice")
    assert glob_matches("b?b", "BOB")
    assert glob_matches("bob", "hi bob!", word_boundary=True)
    assert not glob_matches("bob", "bobby", word_boundary=True)
    assert not glob_matches("a.c", "abc")  # regex characters are literal


def test_dotted_keys_escape():
    event = {"content": {"m.mentions": {"room": True}, "a": {"b": 1}}}
    assert lookup(event, "content.m\\.mentions.room") is True
    assert lookup(event, "content.a.b") == 1
    ctx = _ctx({"m.mentions": {"room": 1}})
    # JSON 1 is not true.
    cond = {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True}
    assert not condition_holds(cond, ctx, None)


def test_member_count_and_permission():
    ctx = _ctx({}, members=2, power=50)
    for spec, holds in (("2", True), ("==2", True), ("<2", False), (">=2", True), ("x", False)):
        assert condition_holds({"kind": "room_member_count", "is": spec}, ctx, None) is holds
    perm = {"kind": "sender_notification_permission", "key": "room"}
    assert condition_holds(perm, ctx, None)
    assert not condition_holds(perm, _ctx({}, power=10), None)
    assert not condition_holds(perm, _ctx({}, power=60, levels={"room": 100}), None)
    assert not condition_holds({"kind": "unknown_kind"}, ctx, None)


def test_default_ruleset_outcomes():
    rules = build_ruleset(ME, [])
    one_to_one = evaluate(rules, _ctx({"msgtype": "m.text", "body": "hi"}, members=2))
    assert notifies(one_to_one) and not is_highlight(one_to_one or [])
    assert {"set_tweak": "sound", "value": "default"} in (one_to_one or [])
    group = evaluate(rules, _ctx({"msgtype": "m.text", "body": "hi"}, members=5))
    assert group == ["notify"]
    assert not notifies(evaluate(rules, _ctx({"msgtype": "m.notice", "body": "bot"})))
    name = evaluate(rules, _ctx({"msgtype": "m.text", "body": "hey bob"}))
    assert is_highlight(name or [])
    # With m.mentions, the legacy user-name rule no longer applies (intentional mentions).
    quiet = evaluate(rules, _ctx({"body": "hey bob", "m.mentions": {}}, members=5))
    assert quiet == ["notify"]
    mention = evaluate(rules, _ctx({"body": "x", "m.mentions": {"user_ids": [ME]}}))
    assert is_highlight(mention or [])
    room = {"body": "all", "m.mentions": {"room": True}}
    assert is_highlight(evaluate(rules, _ctx(room, power=50)) or [])
    assert not is_highlight(evaluate(rules, _ctx(room, power=0)) or [])
    edit = {"body": "* x", "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}}
    assert not notifies(evaluate(rules, _ctx(edit)))
    invite = _ctx({"membership": "invite"}, type_="m.room.member", event={"state_key": ME})
    assert notifies(evaluate(rules, invite))
    other = _ctx({"membership": "invite"}, type_="m.room.member", event={"state_key": "@c:x"})
    assert not notifies(evaluate(rules, other))
    master_on = build_ruleset(ME, [])
    master_on["override"][0]["enabled"] = True
    assert evaluate(master_on, _ctx({"body": "hey bob"})) == []


# --- the shared verdict of the default ruleset (issue 18) -----------------------------------
USERS = (ME, "@carol:example.org", "@dave:example.org")
SHARED_CASES = [
    # A body without m.mentions may name a user's localpart (a legacy rule per user).
    ("message, 2 members", _ctx({"msgtype": "m.text", "body": "hi"}, members=2), False),
    ("message, 3 members", _ctx({"msgtype": "m.text", "body": "hi"}), False),
    (
        "message with m.mentions, 2 members",
        _ctx({"body": "hi bob", "m.mentions": {"user_ids": []}}, members=2),
        False,
    ),
    (
        "message mentioning nobody, 3 members",
        _ctx({"body": "hi bob", "m.mentions": {}}),
        True,
    ),
    ("notice", _ctx({"msgtype": "m.notice", "body": "hi"}), True),
    (
        "join",
        _ctx({"membership": "join"}, type_="m.room.member", event={"state_key": "@x:e"}),
        True,
    ),
    (
        "invite of bob",
        _ctx({"membership": "invite"}, type_="m.room.member", event={"state_key": ME}),
        False,
    ),
    ("names bob's localpart", _ctx({"msgtype": "m.text", "body": "hey bob"}), False),
    (
        "mentions bob",
        _ctx({"body": "x", "m.mentions": {"user_ids": [ME]}}),
        False,
    ),
    ("mentions nobody", _ctx({"body": "x", "m.mentions": {}}), True),
    ("room mention", _ctx({"body": "@room", "m.mentions": {"room": True}}, power=100), True),
    ("encrypted", _ctx({"algorithm": "x"}, type_="m.room.encrypted"), True),
    ("state without body", _ctx({"name": "n"}, type_="m.room.name", event={"state_key": ""}), True),
    ("call invite", _ctx({"call_id": "c"}, type_="m.call.invite"), True),
]


def test_shared_default_verdict_is_every_users_verdict():
    for name, ctx, expect_shared in SHARED_CASES:
        memo: dict[str, bool] = {}
        shared, actions = shared_default_verdict(build_ruleset(USERS[1], []), ctx, memo)
        assert shared is expect_shared, name
        if shared:
            for user in USERS:
                assert evaluate(build_ruleset(user, []), ctx, None, {}) == actions, (name, user)
