"""Hypothesis strategies and hostile values for tests/fuzz/test_hostile_input.py: random
JSON (lone surrogates, NUL, huge integers, NaN), non-JSON bodies, percent-encoded path segments,
junk query strings and per-route body templates whose leaves are made hostile."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from tests import harness
from tests.harness import SERVER_NAME

#: Any character, lone surrogates and NUL included (json.dumps escapes them as \\uXXXX).
_any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)

#: Field names the handlers read, so random bodies get past "missing field" checks.
_KEYS = st.sampled_from(
    [
        "type", "content", "state_key", "user_id", "room_id", "event_id", "visibility",
        "preset", "invite", "initial_state", "creation_content", "power_level_content_override",
        "room_version", "name", "topic", "room_alias_name", "is_direct", "identifier",
        "password", "auth", "device_id", "initial_device_display_name", "display_name",
        "displayname", "avatar_url", "new_version", "reason", "filter", "limit", "since",
        "server", "m.fully_read", "m.read", "m.read.private", "order", "actions", "conditions",
        "pattern", "enabled", "tags", "event_fields", "event_format", "presence",
        "account_data", "room", "timeline", "state", "rooms", "not_rooms", "senders", "types",
        "lazy_load_members", "username", "kind", "logout_devices", "new_password", "devices",
        "include_all_networks", "third_party_instance_id", "mac", "nonce", "admin", "user",
        "body", "msgtype", "membership", "join_rule", "history_visibility", "users", "events",
        "users_default", "events_default", "state_default", "ban", "kick", "redact",
        "thread_id", "m.federate", "predecessor", "address", "medium", "token", "session",
        "inhibit_login", "refresh_token", "room_alias", "alias", "alt_aliases", "via",
    ]
)  # fmt: skip

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**53, -(2**53), 2**63, 2**64, 2**70, -(2**70), 0, -1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | _any_text
    | st.sampled_from(["", "@alice:test.example", "!r:test.example", "$e", "#a:test.example",
                       "m.room.message", "public_chat", "private_chat", "trusted_private_chat",
                       "public", "private", "m.login.password", "m.id.user", "1", "10", "x" * 300])
)  # fmt: skip

json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_KEYS | _any_text, children, max_size=5)
    ),
    max_leaves=25,
)
json_objects = st.dictionaries(_KEYS | _any_text, json_values, max_size=6)


def dumps_json(value: Any) -> bytes:
    # ensure_ascii escapes lone surrogates and NUL as \\uXXXX; NaN/Infinity come out as the bare
    # words NaN/Infinity, which the server must refuse as not JSON.
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode("ascii")


non_json_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"{",
            b"}",
            b"[",
            b"null",
            b"true",
            b"1",
            b'"s"',
            b"NaN",
            b'{"a": NaN}',
            b'{"a": Infinity}',
            b'{"a": -Infinity}',
            b'{"a": 1e99999}',
            b'{"a": "\\ud800"}',
            b'{"\\udfff": 1}',
            b'{"a": "\\u0000"}',
            b"\xff\xfe{\x00}",
            b"\xef\xbb\xbf{}",
            b"{'a': 1}",
            b'{"a": 1,}',
            b'{"a": 1}{"b": 2}',
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
            b"a=1&b=2",
            b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
            b'{"x": "' + b"y" * 70_000 + b'"}',
            b"{" + b" " * (1024 * 1024 + 1) + b"}",  # over the body limit: 413 M_TOO_LARGE
        ]
    ),
)

content_types = st.sampled_from(
    [
        None,
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/octet-stream",
        "",
        "garbage/%%;;=;",
    ]
)

#: Raw (already percent-encoded) path segments that routing and decoding must survive.
_RAW_SEGMENTS = [
    "%00", "..", ".", "%2e%2e", "%2F", "%2f..%2f", "%zz", "%", "a%00b", "%C0%AE", "%FF",
    "%ED%A0%80", "%F0%9F%98%80", "~", "%20", "+", "%0A",
]  # fmt: skip

_HOSTILE_VALUES = [
    "", "..", ".", "/", "//", "../../etc/passwd", "\x00", "%00", "%", "!", "@", "$", "#", ":",
    "!:", "@:", "$:", "#:", "!room", "@user", "#alias", "$event", "!room:", "@user:", "!room:a:b",
    "@UPPER:test.example", "@a:remote.example", "!nope:test.example", "!nope:remote.example",
    "$nope:test.example", "$" + "A" * 43, "#nope:test.example", "#a:remote.example",
    "@" + "a" * 300 + ":test.example", "!" + "r" * 300 + ":test.example", "x" * 5000,
    "m.room.create", "m.room.power_levels", "m.room.member", "' OR 1=1 --", "Robert'); DROP",
    "\ud800", "\udfff", "é", "\u202e", "0", "-1", "99999999999999999999", "2**70", "NaN",
    "global", "override", "underride", "sender", "content", ".m.rule.master", "enabled",
    "actions", "m.read", "m.read.private", "m.fully_read", "m.favourite", "u.tag",
]  # fmt: skip


@dataclass
class Context:
    """A live user, room and event whose IDs go into path parameters."""

    user: harness.TestUser
    room_id: str
    event_id: str
    dirty: bool = False


def valid_values(ctx: Context, name: str) -> list[str]:
    common = [ctx.user.user_id, ctx.room_id, ctx.event_id]
    by_name: dict[str, list[str]] = {
        "room_id": [ctx.room_id],
        "room": [ctx.room_id, f"#fuzz:{SERVER_NAME}"],
        "event_id": [ctx.event_id],
        "user_id": [ctx.user.user_id],
        "device_id": [ctx.user.device_id],
        "event_type": ["m.room.message", "m.room.name", "m.room.topic", "m.room.member"],
        "type": ["m.direct", "m.fully_read", "m.push_rules", "org.example"],
        "state_key": ["", ctx.user.user_id],
        "room_alias": [f"#fuzz:{SERVER_NAME}"],
        "filter_id": ["0", "1"],
        "tag": ["m.favourite", "u.x"],
        "scope": ["global"],
        "kind": ["override", "underride", "sender", "room", "content"],
        "rule_id": [".m.rule.master", "my.rule"],
        "attr": ["enabled", "actions"],
        "receipt_type": ["m.read", "m.read.private", "m.fully_read"],
        "server_name": [SERVER_NAME],
        "media_id": ["AAAAAAAAAAAAAAAAAAAAAAAA", "abc-_123"],
        "file_name": ["a.jpg", "..", "x.html"],
        "version": ["1", "2"],
        "session_id": ["s1"],
        "rel_type": ["m.thread", "m.replace", "m.reference", "m.annotation"],
        "report_id": ["1", "0"],
        "purge_id": ["abc"],
    }
    if name in ("scope", "kind", "attr", "receipt_type"):
        return by_name[name]
    return by_name.get(name, []) + common


def encode_segment(text: str) -> str:
    return quote(text, safe="", errors="surrogatepass")


@st.composite
def path_values(draw: st.DrawFn, ctx: Context, name: str, hostile: bool) -> str:
    """An encoded path segment: usually valid, sometimes hostile (always when ``hostile``)."""
    if not hostile and draw(st.integers(0, 9)) < 8:
        return encode_segment(draw(st.sampled_from(valid_values(ctx, name))))
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.sampled_from(_RAW_SEGMENTS))
    if choice == 1:
        return encode_segment(draw(st.sampled_from(_HOSTILE_VALUES)))
    return encode_segment(draw(_any_text | st.text(alphabet="/.%!@$#:\x00a", max_size=30)))


_QUERY_KEYS = [
    "since", "from", "to", "limit", "timeout", "filter", "dir", "full_state", "set_presence",
    "server", "via", "server_name", "kind", "include_all_networks", "membership",
    "not_membership", "at", "user_id", "ts", "event_id", "access_token", "third_party_instance_id",
    "version", "max_depth", "suggested_only", "recurse", "include", "only", "next_batch",
    "before_ts", "size_gt", "keep_profiles", "order_by", "from_ts", "until_ts", "search_term",
    "action_name", "resource_id", "status", "max_timestamp", "event_sender_user_id",
]  # fmt: skip

_QUERY_VALUES = [
    "", "-1", "0", "1", "NaN", "1e9", "0x10", "99999999999999999999", str(2**70), "-" + str(2**70),
    "recent_1", "rank_0", "rank_99999999999999999999", "recent_-1",
    "s0_0_0", "s1_0_0", "s-1_0_0", "s99999999999999999999_0_0", "s1_2", "t1-2_3", "s_", "s",
    "b", "f", "true", "false", "join", "leave", "all", "participated", "{", "[]", "null",
    '{"room": {"timeline": 1}}',
    '{"room":{"timeline":{"limit":-1}}}', '{"room":{"timeline":{"limit":99999999999999999999}}}',
    '{"event_fields": [1]}', '{"room": {"rooms": "x"}}', '{"room": {"state": {"types": [null]}}}',
    '{"presence": {"not_types": ["*"]}, "event_format": "federation"}', "0", "1",
    "\x00", "\ud800", "%00", "../..", "x" * 5000,
]  # fmt: skip


def _safe_timeout(value: str) -> str:
    """A long-poll ``timeout`` the server would honour is replaced: the test must not wait."""
    try:
        return "0" if int(value) > 0 else value
    except ValueError:
        return value


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(_QUERY_KEYS) | _any_text,
                st.sampled_from(_QUERY_VALUES) | _any_text,
            ),
            max_size=5,
        )
    )
    parts = []
    for key, value in pairs:
        if key == "timeout":
            value = _safe_timeout(value)
        parts.append(f"{encode_segment(key)}={encode_segment(value)}")
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(["%zz=1", "a", "=", "&&", "a=%00", "a=%ED%A0%80"])))
    return "&".join(parts)


# A valid-looking body per route with every "X" leaf replaced by a hostile value, so that the
# fuzz reaches field validation, the services and the database (where a NUL or an over-long
# string would first break) rather than stopping at "missing field".
BODY_TEMPLATES: dict[str, Any] = {
    "/profile/{user_id}/displayname": {"displayname": "X"},
    "/profile/{user_id}/avatar_url": {"avatar_url": "X"},
    "/devices/{device_id}": {"display_name": "X"},
    "/createRoom": {
        "name": "X", "topic": "X", "preset": "X", "room_alias_name": "X", "invite": ["X"],
        "initial_state": [{"type": "X", "state_key": "X", "content": {"X": "X"}}],
        "room_version": "X", "creation_content": {"X": "X", "type": "X"}, "visibility": "X",
        "power_level_content_override": {"users": {"X": "X"}, "events": {"X": "X"}, "ban": "X"},
        "is_direct": "X",
    },
    "/rooms/{room_id}/send/{event_type}/{txn_id}": {
        "msgtype": "X", "body": "X", "X": "X", "m.relates_to": {"rel_type": "X", "event_id": "X"},
    },
    "/rooms/{room_id}/state/{event_type}": {"name": "X", "topic": "X", "X": "X"},
    "/rooms/{room_id}/state/{event_type}/{state_key}": {"membership": "X", "displayname": "X"},
    "/rooms/{room_id}/invite": {"user_id": "X", "reason": "X"},
    "/rooms/{room_id}/kick": {"user_id": "X", "reason": "X"},
    "/rooms/{room_id}/ban": {"user_id": "X", "reason": "X"},
    "/rooms/{room_id}/unban": {"user_id": "X", "reason": "X"},
    "/rooms/{room_id}/leave": {"reason": "X"},
    "/join/{room}": {"reason": "X"},
    "/rooms/{room}/join": {"reason": "X"},
    "/knock/{room}": {"reason": "X"},
    "/directory/room/{room_alias}": {"room_id": "X"},
    "/directory/list/room/{room_id}": {"visibility": "X"},
    "/publicRooms": {
        "limit": "X", "since": "X", "server": "X", "filter": {"generic_search_term": "X"},
    },
    "/user_directory/search": {"search_term": "X", "limit": "X"},
    "/login": {
        "type": "X", "identifier": {"type": "X", "user": "X"}, "user": "X", "password": "X",
        "device_id": "X", "initial_device_display_name": "X", "token": "X",
    },
    "/register": {
        "username": "X", "password": "X", "auth": {"type": "X", "session": "X"},
        "device_id": "X", "initial_device_display_name": "X", "inhibit_login": "X",
    },
    "/account/password": {
        "new_password": "X", "logout_devices": "X", "auth": {"type": "X", "password": "X"},
    },
    "/delete_devices": {"devices": ["X"], "auth": {"type": "X"}},
    "/room_keys/version": {"algorithm": "X", "auth_data": {"public_key": "X", "X": "X"}},
    "/room_keys/version/{version}": {"algorithm": "X", "auth_data": {"public_key": "X"}},
    "/room_keys/keys": {"rooms": {"X": {"sessions": {"X": {
        "first_message_index": "X", "forwarded_count": "X", "is_verified": "X",
        "session_data": {"X": "X"}}}}}},
    "/room_keys/keys/{room_id}": {"sessions": {"X": {
        "first_message_index": "X", "forwarded_count": "X", "is_verified": "X",
        "session_data": "X"}}},
    "/room_keys/keys/{room_id}/{session_id}": {
        "first_message_index": "X", "forwarded_count": "X", "is_verified": "X",
        "session_data": {"X": "X"}},
    "/rooms/{room_id}/upgrade": {"new_version": "X"},
    "/user/{user_id}/filter": {
        "room": {"timeline": {"limit": "X", "types": ["X"], "not_senders": ["X"]}, "rooms": ["X"]},
        "event_fields": ["X"], "event_format": "X", "presence": {"types": ["X"]},
    },
    "/user/{user_id}/account_data/{type}": {"X": "X"},
    "/user/{user_id}/rooms/{room_id}/account_data/{type}": {"X": "X"},
    "/user/{user_id}/rooms/{room_id}/tags/{tag}": {"order": "X"},
    "/pushrules/{scope}/{kind}/{rule_id}": {
        "actions": ["X", {"set_tweak": "X", "value": "X"}], "pattern": "X",
        "conditions": [{"kind": "X", "key": "X", "pattern": "X", "is": "X"}],
    },
    "/pushrules/{scope}/{kind}/{rule_id}/{attr}": {"enabled": "X", "actions": ["X"]},
    "/rooms/{room_id}/receipt/{receipt_type}/{event_id}": {"thread_id": "X"},
    "/pushers/set": {
        "kind": "X", "app_id": "X", "pushkey": "X", "app_display_name": "X",
        "device_display_name": "X", "profile_tag": "X", "lang": "X", "append": "X",
        "data": {"url": "X", "format": "X"},
    },
    "/rooms/{room_id}/read_markers": {"m.fully_read": "X", "m.read": "X", "m.read.private": "X"},
    "/rooms/{room_id}/typing/{user_id}": {"typing": "X", "timeout": "X"},
    "/presence/{user_id}/status": {"presence": "X", "status_msg": "X"},
    "/rooms/{room_id}/redact/{event_id}/{txn_id}": {"reason": "X"},
    "/search": {"search_categories": {"room_events": {
        "search_term": "X", "keys": ["X"], "order_by": "X", "include_state": "X",
        "filter": {"limit": "X", "rooms": ["X"], "not_rooms": ["X"], "senders": ["X"],
                   "types": ["X"], "contains_url": "X"},
        "event_context": {"before_limit": "X", "after_limit": "X", "include_profile": "X"},
        "groupings": {"group_by": [{"key": "X"}]}}}},
    "/rooms/{room_id}/report/{event_id}": {"reason": "X", "score": "X"},
    "/rooms/{room_id}/report": {"reason": "X"},
    "/users/{user_id}/report": {"reason": "X"},
    "/_synapse/admin/v1/send_server_notice": {
        "user_id": "X", "content": {"msgtype": "X", "body": "X"}, "type": "X", "state_key": "X",
    },
    "/_synapse/admin/v1/rooms/{room_id}/block": {"block": "X"},
    "/_synapse/admin/v1/join/{room_id}": {"user_id": "X"},
    "/_synapse/admin/v1/rooms/{room_id}/make_room_admin": {"user_id": "X"},
    "/_synapse/admin/v1/purge_history/{room_id}": {
        "delete_local_events": "X", "purge_up_to_ts": "X", "purge_up_to_event_id": "X",
    },
    "/_synapse/admin/v1/register": {
        "nonce": "X", "username": "X", "password": "X", "mac": "X", "admin": "X",
        "displayname": "X",
    },
}  # fmt: skip

_leaf_values = _scalars | st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "\u0000\u0000", "x" * 70_000, "@\x00:test.example",
     "!\x00:test.example", "#\x00:test.example", "m.room.\x00", " ", "\t\n", "𝕏" * 100]
) | json_values  # fmt: skip


def template_for(template: str) -> Any:
    relative = template.removeprefix("/_matrix/client/v3")
    return BODY_TEMPLATES.get(relative, BODY_TEMPLATES.get(template))


@st.composite
def mutated_bodies(draw: st.DrawFn, shape: Any) -> Any:
    """``shape`` with each "X" leaf (key or value) either kept valid-ish or made hostile."""
    if shape == "X":
        return draw(_leaf_values)
    if isinstance(shape, list):
        return [draw(mutated_bodies(item)) for item in shape]
    if isinstance(shape, dict):
        out: dict[str, Any] = {}
        for key, value in shape.items():
            if draw(st.integers(0, 5)) == 0:
                continue  # sometimes the field is missing
            if key == "X":
                key = draw(_any_text | st.sampled_from(["\x00", "m.x", ""]))
            out[key] = draw(mutated_bodies(value))
        return out
    return shape


def fill_template(shape: Any, leaf: Any) -> Any:
    if shape == "X":
        return leaf
    if isinstance(shape, list):
        return [fill_template(item, leaf) for item in shape]
    if isinstance(shape, dict):
        return {(leaf if k == "X" else k): fill_template(v, leaf) for k, v in shape.items()}
    return shape


AUTH_HEADERS = [
    "", "Bearer", "Bearer ", "Bearer  ", "bearer x", "Basic dXNlcjpwYXNz", "Bearer x y",
    "Bearer " + "x" * 5000, "Bearer %00", "Bearer \u00e9", "Token abc", "Bearer syt_\u00ff",
]  # fmt: skip
