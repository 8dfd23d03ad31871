"""Push rules on both engines: the default set, user rules with before/after, enabled and
actions, what cannot be changed, and m.push_rules in /sync after a change. Plus the pure
default rule set."""

from __future__ import annotations

from typing import Any

from homeserver.push.default_rules import default_rules
from tests.harness import TestServer, TestUser
from tests.sync.helpers import sync


def _ids(rules: list[dict[str, Any]]) -> list[str]:
    return [r["rule_id"] for r in rules]


async def _ruleset(server: TestServer, user: TestUser) -> dict[str, Any]:
    status, body = await server.call("GET", "/pushrules/", user)
    assert status == 200, body
    return body["global"]


async def test_default_rules_served(server: TestServer):
    alice = await server.register("alice")
    rules = await _ruleset(server, alice)
    assert set(rules) == {"override", "content", "room", "sender", "underride"}
    assert _ids(rules["override"]) == [
        ".m.rule.master",
        ".m.rule.suppress_notices",
        ".m.rule.invite_for_me",
        ".m.rule.member_event",
        ".m.rule.is_user_mention",
        ".m.rule.is_room_mention",
        ".m.rule.tombstone",
        ".m.rule.reaction",
        ".m.rule.room.server_acl",
        ".m.rule.suppress_edits",
    ]
    assert _ids(rules["underride"]) == [
        ".m.rule.call",
        ".m.rule.encrypted_room_one_to_one",
        ".m.rule.room_one_to_one",
        ".m.rule.message",
        ".m.rule.encrypted",
    ]
    assert rules["content"][0]["rule_id"] == ".m.rule.contains_user_name"
    assert rules["content"][0]["pattern"] == "alice"
    status, tombstone = await server.call(
        "GET", "/pushrules/global/override/.m.rule.tombstone", alice
    )
    assert status == 200
    assert tombstone["conditions"] == [
        {"kind": "event_match", "key": "type", "pattern": "m.room.tombstone"},
        {"kind": "event_match", "key": "state_key", "pattern": ""},
    ]
    assert tombstone["actions"] == ["notify", {"set_tweak": "highlight"}]
    assert tombstone["enabled"] is True and tombstone["default"] is True
    status, master = await server.call("GET", "/pushrules/global/override/.m.rule.master", alice)
    assert master["enabled"] is False
    status, kind = await server.call("GET", "/pushrules/global/underride/", alice)
    assert status == 200 and _ids(kind) == _ids(rules["underride"])
    status, scope = await server.call("GET", "/pushrules/global/", alice)
    assert status == 200 and scope == rules


async def test_user_rules_are_placed_and_removed(server: TestServer):
    alice = await server.register("alice")
    first = await sync(server, alice)
    base = "/pushrules/global/override"
    conditions = [{"kind": "event_match", "key": "type", "pattern": "org.example"}]
    for rule_id, params in (("a", {}), ("b", {}), ("c", {"after": "b"}), ("d", {"before": "a"})):
        status, body = await server.call(
            "PUT",
            f"{base}/{rule_id}",
            alice,
            json={"conditions": conditions, "actions": ["notify"]},
            params=params,
        )
        assert status == 200, body
    rules = await _ruleset(server, alice)
    # Master first, then the user's rules (newest on top unless placed), then the defaults.
    assert _ids(rules["override"])[:5] == [".m.rule.master", "b", "c", "d", "a"]
    assert rules["override"][1] == {
        "rule_id": "b",
        "default": False,
        "enabled": True,
        "conditions": conditions,
        "actions": ["notify"],
    }
    status, _ = await server.call(
        "PUT", "/pushrules/global/room/!r:test.example", alice, json={"actions": []}
    )
    assert status == 200
    status, _ = await server.call(
        "PUT", "/pushrules/global/content/cake", alice, json={"pattern": "cake", "actions": []}
    )
    assert status == 200
    rules = await _ruleset(server, alice)
    assert _ids(rules["room"]) == ["!r:test.example"]
    assert _ids(rules["content"]) == ["cake", ".m.rule.contains_user_name"]

    body = await sync(server, alice, since=first["next_batch"])
    pushed = [e for e in body["account_data"]["events"] if e["type"] == "m.push_rules"]
    assert _ids(pushed[0]["content"]["global"]["override"])[:5] == [
        ".m.rule.master",
        "b",
        "c",
        "d",
        "a",
    ]

    status, _ = await server.call("DELETE", f"{base}/c", alice)
    assert status == 200
    status, body = await server.call("DELETE", f"{base}/c", alice)
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    status, body = await server.call("GET", f"{base}/c", alice)
    assert status == 404
    status, body = await server.call("DELETE", f"{base}/.m.rule.tombstone", alice)
    assert status == 404
    assert ".m.rule.tombstone" in _ids((await _ruleset(server, alice))["override"])


async def test_enabled_and_actions(server: TestServer):
    alice = await server.register("alice")
    master = "/pushrules/global/override/.m.rule.master"
    assert await server.call("GET", f"{master}/enabled", alice) == (200, {"enabled": False})
    status, _ = await server.call("PUT", f"{master}/enabled", alice, json={"enabled": True})
    assert status == 200
    assert await server.call("GET", f"{master}/enabled", alice) == (200, {"enabled": True})
    message = "/pushrules/global/underride/.m.rule.message"
    status, _ = await server.call("PUT", f"{message}/actions", alice, json={"actions": []})
    assert status == 200
    assert await server.call("GET", f"{message}/actions", alice) == (200, {"actions": []})
    status, rule = await server.call("GET", message, alice)
    assert rule["actions"] == [] and rule["default"] is True
    # A user rule keeps its place when toggled.
    await server.call(
        "PUT", "/pushrules/global/sender/@spam:x.y", alice, json={"actions": ["dont_notify"]}
    )
    status, _ = await server.call(
        "PUT", "/pushrules/global/sender/@spam:x.y/enabled", alice, json={"enabled": False}
    )
    assert status == 200
    rules = await _ruleset(server, alice)
    assert rules["sender"] == [
        {"rule_id": "@spam:x.y", "default": False, "enabled": False, "actions": ["dont_notify"]}
    ]
    # Another user is unaffected.
    bob = await server.register("bob")
    assert await server.call("GET", f"{master}/enabled", bob) == (200, {"enabled": False})


async def test_push_rule_errors(server: TestServer):
    alice = await server.register("alice")
    base = "/pushrules/global/override"
    cases = [
        ("PUT", f"{base}/.mine", {"conditions": [], "actions": []}, {}, 400),
        ("PUT", f"{base}/x", {"actions": []}, {}, 400),  # no conditions
        ("PUT", f"{base}/x", {"conditions": [{}], "actions": []}, {}, 400),
        ("PUT", f"{base}/x", {"conditions": [], "actions": ["explode"]}, {}, 400),
        ("PUT", f"{base}/x", {"conditions": []}, {}, 400),  # no actions
        ("PUT", "/pushrules/global/content/x", {"actions": []}, {}, 400),  # no pattern
        ("PUT", "/pushrules/global/bogus/x", {"actions": []}, {}, 400),
        ("PUT", "/pushrules/device/override/x", {"conditions": [], "actions": []}, {}, 400),
        ("PUT", f"{base}/x", {"conditions": [], "actions": []}, {"before": "nope"}, 400),
        ("PUT", f"{base}/.m.rule.master/enabled", {"enabled": "yes"}, {}, 400),
        ("PUT", f"{base}/.m.rule.master/actions", {"actions": "notify"}, {}, 400),
        ("PUT", f"{base}/unknown/enabled", {"enabled": True}, {}, 404),
        ("GET", f"{base}/unknown", None, {}, 404),
        ("GET", f"{base}/.m.rule.master/colour", None, {}, 400),
    ]
    for method, path, json, params, expected in cases:
        status, body = await server.call(method, path, alice, json=json, params=params)
        assert status == expected, (method, path, json, body)
        assert "errcode" in body
    status, body = await server.call("GET", "/pushrules/")
    assert status == 401


def test_default_rules_name_the_user():
    rules = default_rules("@bob:example.org")
    invite = next(r for r in rules["override"] if r["rule_id"] == ".m.rule.invite_for_me")
    assert {"kind": "event_match", "key": "state_key", "pattern": "@bob:example.org"} in invite[
        "conditions"
    ]
    mention = next(r for r in rules["override"] if r["rule_id"] == ".m.rule.is_user_mention")
    assert mention["conditions"][0]["value"] == "@bob:example.org"
    assert {"set_tweak": "highlight"} in mention["actions"]
    one_to_one = next(r for r in rules["underride"] if r["rule_id"] == ".m.rule.room_one_to_one")
    assert {"kind": "room_member_count", "is": "2"} in one_to_one["conditions"]


async def test_percent_encoded_rule_ids(server: TestServer):
    alice = await server.register("alice")
    status, body = await server.call(
        "PUT", "/pushrules/global/room/%21r%3Atest.example", alice, json={"actions": []}
    )
    assert status == 200, body
    status, rule = await server.call("GET", "/pushrules/global/room/!r:test.example", alice)
    assert status == 200 and rule["rule_id"] == "!r:test.example"
    status, body = await server.call(
        "PUT", "/pushrules/global/override/a%2Fb", alice, json={"conditions": [], "actions": []}
    )
    assert status in (400, 404) and "errcode" in body


async def test_room_rule_copied_for_an_upgrade(server: TestServer):
    alice = await server.register("alice")
    await server.call(
        "PUT", "/pushrules/global/room/!old:test.example", alice, json={"actions": []}
    )
    store = server.hs.store
    async with store.db.transaction("test_copy") as txn:
        assert await store.push_rules.copy_room_rule_txn(
            txn, alice.user_id, "!old:test.example", "!new:test.example"
        )
        assert not await store.push_rules.copy_room_rule_txn(
            txn, alice.user_id, "!none:test.example", "!new2:test.example"
        )
    rules = await _ruleset(server, alice)
    assert sorted(_ids(rules["room"])) == ["!new:test.example", "!old:test.example"]
