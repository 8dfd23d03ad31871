"""Structured hypothesis strategies for tests/fuzz/test_endpoint_bodies.py: near-valid bodies of
createRoom, upgrade, send, state, login, register and federation ``send`` (the right keys with
wrong types, huge or deeply nested values, unicode edge cases, NUL, lone surrogates, big
integers, invalid room versions), mixed with garbage.

Two kinds of placeholder are left in drawn bodies for the test to fill in, because a drawn value
must not depend on the server's state (hypothesis replays and shrinks examples):

* :class:`Deep` — a nesting ``depth`` levels deep, spliced in as raw JSON text by
  :func:`serialize` (building it as a Python value would hit the recursion limit in the test's own
  ``json.dumps`` first);
* :data:`FRESH` — a value unused so far (a username, a transaction ID), made by the test.

PDUs for the federation endpoint are drawn as :class:`PduSpec` recipes: the test builds a PDU
that its fake remote signs correctly on top of the live room, then applies the recipe's
mutations (and re-signs or not), so that what is fuzzed is the PDU and not the request's
X-Matrix signature.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import strategies as st

from homeserver.room_versions import KNOWN_ROOM_VERSIONS
from tests.fuzz.strategies import json_values, non_json_bodies
from tests.harness import SERVER_NAME

# ----------------------------------------------------------------------------- placeholders


@dataclass(frozen=True)
class Deep:
    """``depth`` nested lists or objects (raw JSON text, spliced in by :func:`serialize`)."""

    depth: int
    kind: str = "list"

    def text(self) -> str:
        if self.kind == "list":
            return "[" * self.depth + "1" + "]" * self.depth
        return '{"a":' * self.depth + "1" + "}" * self.depth


class _Fresh:
    def __repr__(self) -> str:
        return "FRESH"


#: Replaced by the test with a value not used before (hypothesis draws must stay replayable).
FRESH = _Fresh()


@dataclass(frozen=True)
class Raw:
    """A body sent as these exact bytes (not JSON, or JSON no Python value can produce)."""

    data: bytes


def substitute(value: Any, fresh: Any) -> Any:
    """``value`` with every :data:`FRESH` replaced by ``fresh()``."""
    if value is FRESH:
        return fresh()
    if isinstance(value, dict):
        return {k: substitute(v, fresh) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, fresh) for v in value]
    return value


def serialize(value: Any) -> bytes:
    """The request body: ``Raw`` as is; otherwise JSON with NUL and lone surrogates escaped as
    ``\\uXXXX``, NaN/Infinity as bare words (which the server must refuse) and every
    :class:`Deep` spliced in as raw text."""
    if isinstance(value, Raw):
        return value.data
    splices: dict[str, str] = {}
    counter = itertools.count()

    def default(obj: Any) -> Any:
        if isinstance(obj, Deep):
            token = f"__deep_{next(counter)}__"
            splices[f'"{token}"'] = obj.text()
            return token
        raise TypeError(f"cannot serialise {obj!r}")

    text = json.dumps(value, ensure_ascii=True, allow_nan=True, default=default)
    for token, raw in splices.items():
        text = text.replace(token, raw, 1)
    return text.encode("ascii")


def contains(value: Any, kind: type) -> bool:
    if isinstance(value, kind):
        return True
    if isinstance(value, dict):
        return any(contains(v, kind) for v in value.values())
    if isinstance(value, list):
        return any(contains(v, kind) for v in value)
    return False


# ----------------------------------------------------------------------------- hostile leaves

_UNICODE_EDGES = [
    "", " ", "\x00", "a\x00b", "\ud800", "\udfff", "a\udc80b", "\ud83d", "\ufeff", "\ufffe",
    "\uffff", "\U0010ffff", "\u202e", "\u200b", "\u0301", "e\u0301", "\x7f", "\x1b[31m", "\r\n",
    "\t", "😀", "𝕏" * 50, "ß", "İ", "Ω", "ﬀ", "\u2028", "%00", "\\u0000", "' OR 1=1 --",
    "<script>", "../../etc/passwd",
]  # fmt: skip

_FINITE_NUMBERS = [
    0, -1, 1, 50, 100, 101, -100, 2**31, 2**53 - 1, 2**53, -(2**53), 2**63 - 1, 2**63, -(2**63),
    2**64, 2**100, -(2**100), 10**400, 0.5, -0.0, 1e308, 50.0,
]  # fmt: skip

#: Long strings are built, not listed: a strategy's repr holds its literal values.
_long_strings = st.sampled_from([255, 256, 300, 65_536, 70_000]).map(lambda n: "x" * n)
#: Unicode edge cases short enough for a path segment (a request line is limited to 8 kB).
short_edges = st.sampled_from(_UNICODE_EDGES) | st.text(
    alphabet=st.characters(codec=None, exclude_categories=()), max_size=20
)
unicode_edges = short_edges | _long_strings
finite_numbers = (
    st.sampled_from(_FINITE_NUMBERS)
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
)
#: Bare NaN/Infinity and nesting past the server's limit make the whole body unreadable, so
#: they are kept rare inside near-valid bodies (the garbage branch has plenty of them).
_unreadable = st.sampled_from([float("nan"), float("inf"), float("-inf")]) | st.builds(
    Deep,
    st.sampled_from([129, 300, 500, 900, 990, 1000, 1100, 3000, 20_000]),
    st.sampled_from(["list", "obj"]),
)
_readable_deep = st.builds(Deep, st.sampled_from([2, 64, 126, 127, 128]), st.just("list")) | (
    st.builds(Deep, st.sampled_from([2, 64, 126, 127, 128]), st.just("obj"))
)


@st.composite
def _weighted(
    draw: st.DrawFn, often: st.SearchStrategy[Any], rarely: st.SearchStrategy[Any], weight: int
) -> Any:
    """``often`` about ``weight`` times as likely as ``rarely``. (``one_of`` would flatten
    nested ``one_of`` branches into equal shares, whatever their number.)"""
    return draw(rarely if draw(st.sampled_from(range(weight + 1))) == weight else often)


big_numbers = _weighted(finite_numbers, _unreadable, 10)

#: A value of the wrong type (or a right type with a hostile value) for any field.
hostile = _weighted(
    st.one_of(
        st.none(),
        st.booleans(),
        finite_numbers,
        unicode_edges,
        st.lists(st.none() | st.integers() | unicode_edges, max_size=3),
        st.dictionaries(unicode_edges, st.none() | st.integers() | unicode_edges, max_size=3),
        _readable_deep,
    ),
    _unreadable,
    8,
)


def near(valid: st.SearchStrategy[Any], weight: int = 7) -> st.SearchStrategy[Any]:
    """Usually ``valid``, sometimes :data:`hostile`."""
    return _weighted(valid, hostile, weight)


def near_dict(
    required: dict[str, st.SearchStrategy[Any]] | None = None,
    optional: dict[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """An object with the right keys (each value usually valid), sometimes an unknown key."""
    base = st.fixed_dictionaries(
        {k: near(v) for k, v in (required or {}).items()},
        optional={k: near(v) for k, v in (optional or {}).items()},
    )
    extra = st.tuples(base, st.dictionaries(unicode_edges, hostile, min_size=1, max_size=2))
    return _weighted(base, extra.map(lambda t: {**t[1], **t[0]}), 5)


# ----------------------------------------------------------------------------- identifiers

VALID_VERSIONS = list(KNOWN_ROOM_VERSIONS)
_INVALID_VERSIONS = [
    "0", "13", "99", "1.0", "01", " 1", "10 ", "v10", "", "\x00", "\ud800", "org.matrix.msc2176",
    "org.matrix.hydra.11", "x" * 300, 10, 1.0, None, True, [], {},
]  # fmt: skip
room_versions = _weighted(st.sampled_from(VALID_VERSIONS), st.sampled_from(_INVALID_VERSIONS), 3)

_LOCAL_USERS = [f"@alice:{SERVER_NAME}", f"@bob:{SERVER_NAME}", f"@nobody:{SERVER_NAME}"]
user_ids = st.sampled_from(
    [
        *_LOCAL_USERS,
        "@r:localhost:1", "@remote:remote.example", "@UPPER:" + SERVER_NAME, "@:" + SERVER_NAME,
        "alice", "@alice", "@alice:", "@a\x00:" + SERVER_NAME, "@" + "a" * 300 + ":" + SERVER_NAME,
        "@alice:[::1]", "@alice:1.2.3.4:99999", "@alice:exa mple.org",
    ]
)  # fmt: skip
room_ids = st.sampled_from(
    [f"!nowhere:{SERVER_NAME}", "!x:remote.example", "!", "!:", "room", "!a\x00:" + SERVER_NAME]
)
event_ids = st.sampled_from(["$" + "A" * 43, "$abc:" + SERVER_NAME, "$", "", "$\x00"])
_EVENT_TYPES = [
    "m.room.message", "m.room.name", "m.room.topic", "m.room.avatar", "m.room.power_levels",
    "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access", "m.room.encryption",
    "m.room.server_acl", "m.room.canonical_alias", "m.room.pinned_events", "m.room.create",
    "m.room.member", "m.room.tombstone", "m.room.redaction", "m.room.third_party_invite",
    "m.space.child", "m.space.parent", "m.reaction", "m.sticker", "org.example.custom", "",
]  # fmt: skip
event_types = st.sampled_from(_EVENT_TYPES) | unicode_edges

power_level = st.sampled_from([0, 50, 100, -1, 101, 2**53 - 1]) | st.integers()
power_level_contents = near_dict(
    optional={
        "users": st.dictionaries(user_ids | unicode_edges, near(power_level), max_size=4),
        "users_default": power_level,
        "events": st.dictionaries(event_types, near(power_level), max_size=4),
        "events_default": power_level,
        "state_default": power_level,
        "ban": power_level,
        "kick": power_level,
        "redact": power_level,
        "invite": power_level,
        "notifications": near_dict(optional={"room": power_level}),
    }
)

# ----------------------------------------------------------------------------- contents


def _content_for(event_type: str) -> st.SearchStrategy[Any]:
    text = st.text(max_size=30) | unicode_edges
    by_type: dict[str, st.SearchStrategy[Any]] = {
        "m.room.power_levels": power_level_contents,
        "m.room.join_rules": near_dict(
            optional={
                "join_rule": st.sampled_from(
                    ["public", "invite", "knock", "restricted", "knock_restricted", "private", "x"]
                ),
                "allow": st.lists(
                    near_dict(optional={"type": st.just("m.room_membership"), "room_id": room_ids}),
                    max_size=3,
                ),
            }
        ),
        "m.room.history_visibility": near_dict(
            optional={
                "history_visibility": st.sampled_from(
                    ["shared", "invited", "joined", "world_readable", "x"]
                )
            }
        ),
        "m.room.guest_access": near_dict(
            optional={"guest_access": st.sampled_from(["can_join", "forbidden", "x"])}
        ),
        "m.room.encryption": near_dict(
            optional={
                "algorithm": st.sampled_from(["m.megolm.v1.aes-sha2", "x"]),
                "rotation_period_ms": big_numbers,
                "rotation_period_msgs": big_numbers,
            }
        ),
        "m.room.server_acl": near_dict(
            optional={
                "allow": st.lists(
                    st.sampled_from(["*", "*.example", "", "\x00"]) | text, max_size=3
                ),
                "deny": st.lists(
                    st.sampled_from(["*", "remote.example", "localhost:*"]), max_size=3
                ),
                "allow_ip_literals": st.booleans(),
            }
        ),
        "m.room.member": near_dict(
            optional={
                "membership": st.sampled_from(["join", "leave", "invite", "ban", "knock", "x"]),
                "displayname": text,
                "avatar_url": text,
                "reason": text,
                "join_authorised_via_users_server": user_ids,
                "third_party_invite": hostile,
            }
        ),
        "m.room.create": near_dict(
            optional={
                "room_version": room_versions,
                "creator": user_ids,
                "m.federate": st.booleans(),
                "type": st.sampled_from(["m.space", "", "x"]),
                "predecessor": near_dict(optional={"room_id": room_ids, "event_id": event_ids}),
                "additional_creators": st.lists(user_ids, max_size=3),
            }
        ),
        "m.room.tombstone": near_dict(
            optional={"body": text, "replacement_room": room_ids | unicode_edges}
        ),
        "m.room.canonical_alias": near_dict(
            optional={
                "alias": st.sampled_from([f"#a:{SERVER_NAME}", "#", "x", f"#nope:{SERVER_NAME}"]),
                "alt_aliases": st.lists(st.sampled_from([f"#b:{SERVER_NAME}", "#x"]), max_size=3),
            }
        ),
        "m.room.redaction": near_dict(optional={"redacts": event_ids, "reason": text}),
    }
    generic = near_dict(
        optional={
            "name": text, "topic": text, "url": text, "body": text, "pinned": st.lists(event_ids),
            "via": st.lists(st.sampled_from([SERVER_NAME, "x", ""]), max_size=2),
        }
    )  # fmt: skip
    return by_type.get(event_type, generic)


#: Each event type's content strategy, built once (building strategies per draw is slow).
CONTENTS: dict[str, st.SearchStrategy[Any]] = {t: _content_for(t) for t in _EVENT_TYPES}

#: (event type, content) pairs where the content is usually shaped for the type.
typed_contents = st.one_of([st.tuples(st.just(t), c) for t, c in CONTENTS.items()])

message_contents = near_dict(
    optional={
        "msgtype": st.sampled_from(["m.text", "m.notice", "m.emote", "m.image", "m.file", "x"]),
        "body": st.text(max_size=50) | unicode_edges,
        "format": st.just("org.matrix.custom.html"),
        "formatted_body": st.text(max_size=50) | unicode_edges,
        "url": st.sampled_from(["mxc://test.example/abc", "http://x", ""]),
        "m.relates_to": near_dict(
            optional={
                "rel_type": st.sampled_from(
                    ["m.annotation", "m.replace", "m.thread", "m.reference"]
                ),
                "event_id": event_ids,
                "key": unicode_edges,
                "m.in_reply_to": near_dict(optional={"event_id": event_ids}),
                "is_falling_back": st.booleans(),
            }
        ),
        "m.new_content": hostile,
        "info": near_dict(optional={"size": big_numbers, "mimetype": unicode_edges}),
    }
)


def garbage() -> st.SearchStrategy[Any]:
    """Anything at all: random JSON, or bytes that are not JSON."""
    return json_values | hostile | non_json_bodies.map(Raw)


def near_valid_or_garbage(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Four draws in five near-valid, one garbage."""
    return _weighted(valid, garbage(), 4)


# ----------------------------------------------------------------------------- client endpoints

_state_keys = st.sampled_from(["", "", "x", "a/b"]) | user_ids | short_edges
_path_event_types = st.sampled_from(_EVENT_TYPES) | short_edges
_initial_state_entries = st.one_of(
    [
        near_dict(required={"type": st.just(t), "content": c}, optional={"state_key": _state_keys})
        for t, c in CONTENTS.items()
    ]
)

create_room_bodies = near_valid_or_garbage(
    near_dict(
        optional={
            "visibility": st.sampled_from(["public", "private"]),
            "preset": st.sampled_from(["public_chat", "private_chat", "trusted_private_chat"]),
            "name": st.text(max_size=20) | unicode_edges,
            "topic": st.text(max_size=20) | unicode_edges,
            "room_alias_name": st.text(alphabet="abcxyz._=-/:# \x00é", max_size=12)
            | st.just(FRESH),
            "invite": st.lists(user_ids, max_size=3),
            "invite_3pid": st.lists(
                near_dict(
                    optional={
                        "id_server": st.just("id.example"),
                        "id_access_token": st.just("t"),
                        "medium": st.just("email"),
                        "address": st.just("a@b.c"),
                    }
                ),
                max_size=2,
            ),
            "room_version": room_versions,
            "creation_content": CONTENTS["m.room.create"],
            "initial_state": st.lists(_initial_state_entries, max_size=4),
            "power_level_content_override": power_level_contents,
            "is_direct": st.booleans(),
        }
    )
)

upgrade_bodies = near_valid_or_garbage(
    near_dict(
        required={"new_version": room_versions},
        optional={"additional_creators": st.lists(user_ids, max_size=3)},
    )
)

send_requests = st.tuples(
    st.sampled_from(["m.room.message"] * 4 + ["m.reaction", "m.sticker", "org.example"])
    | _path_event_types,
    near_valid_or_garbage(message_contents),
)

state_requests = st.one_of(
    [
        st.tuples(
            _weighted(st.just(t), _path_event_types, 5), _state_keys, near_valid_or_garbage(c)
        )
        for t, c in CONTENTS.items()
    ]
)

LOGIN_PASSWORD = "correct horse battery staple"
_login_users = st.sampled_from(
    ["fuzzlogin", f"@fuzzlogin:{SERVER_NAME}", "FuzzLogin", "nobody", "@x:y", ""]
)
_identifiers = near_dict(
    required={
        "type": _weighted(
            st.just("m.id.user"), st.sampled_from(["m.id.thirdparty", "m.id.phone", "x"]), 4
        ),
        "user": _login_users,
    },
    optional={
        "medium": st.just("email"),
        "address": st.just("a@b.c"),
        "country": st.just("GB"),
        "phone": st.just("123"),
    },
)
_passwords = _weighted(
    st.just(LOGIN_PASSWORD), st.sampled_from(["wrong", "", "x" * 600]) | unicode_edges, 2
)
_device_ids = _weighted(
    st.sampled_from(["DEV", "DEV2"]), st.sampled_from(["", "d" * 600]) | unicode_edges, 3
)

login_bodies = near_valid_or_garbage(
    near_dict(
        required={
            "type": _weighted(
                st.just("m.login.password"), st.sampled_from(["m.login.token", "x"]), 5
            ),
            "identifier": _identifiers,
            "password": _passwords,
        },
        optional={
            "user": _login_users,
            "device_id": _device_ids,
            "initial_device_display_name": st.text(max_size=20) | unicode_edges,
            "refresh_token": st.booleans(),
            "token": st.text(max_size=10),
        },
    )
)

register_bodies = near_valid_or_garbage(
    near_dict(
        required={
            "username": _weighted(
                st.just(FRESH),
                st.sampled_from(["fuzzlogin", "UPPER", "a:b", "_x", ""])
                | st.text(alphabet="abc._=-/@:\x00é", max_size=12),
                3,
            ),
            "password": _passwords,
            "auth": near_dict(
                required={
                    "type": _weighted(
                        st.just("m.login.dummy"), st.sampled_from(["m.login.password", "x"]), 5
                    )
                },
                optional={"session": st.sampled_from(["", "nope"]) | unicode_edges},
            ),
        },
        optional={
            "device_id": _device_ids,
            "initial_device_display_name": st.text(max_size=20) | unicode_edges,
            "inhibit_login": st.booleans(),
            "refresh_token": st.booleans(),
        },
    )
)

# ----------------------------------------------------------------------------- federation send

#: PDU fields a mutation may replace or drop.
PDU_FIELDS = [
    "type", "room_id", "sender", "content", "depth", "prev_events", "auth_events",
    "origin_server_ts", "state_key", "hashes", "signatures", "unsigned", "redacts", "event_id",
    "origin", "prev_state", "membership",
]  # fmt: skip


@dataclass(frozen=True)
class PduSpec:
    """How to make one PDU of a transaction."""

    #: "message", "member", "state" (a typed state event) or "garbage" (``raw`` as is).
    kind: str
    event_type: str = "m.room.message"
    content: Any = None
    #: (field, value) replaced after signing; value ``DROP`` removes the field.
    mutations: tuple[tuple[str, Any], ...] = ()
    #: re-sign after mutating (a "correctly signed" wrong PDU) or not (hash/signature mismatch).
    resign: bool = True
    #: extra damage to the signed PDU: "hash", "signature", "unsigned_sig", "other_server_sig",
    #: "no_sig", "sender_other_server", "unknown_prev", "future_depth", or "".
    damage: str = ""
    raw: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


DROP = "__drop__"

_mutation = st.tuples(
    st.sampled_from(PDU_FIELDS),
    st.just(DROP) | hostile | room_ids | user_ids | event_types | st.lists(event_ids, max_size=3),
)
_damage = _weighted(
    st.just(""),
    st.sampled_from(
        ["hash", "signature", "unsigned_sig", "other_server_sig", "no_sig",
         "sender_other_server", "unknown_prev", "future_depth"]
    ),
    2,
)  # fmt: skip


def _mutations(max_size: int) -> st.SearchStrategy[tuple[tuple[str, Any], ...]]:
    """Usually none (a PDU that should be accepted), else one or more fields replaced."""
    changed = st.lists(_mutation, min_size=1, max_size=max_size).map(tuple)
    return _weighted(st.just(()), changed, 2)


_message_specs = st.builds(
    PduSpec,
    kind=st.just("message"),
    content=near_valid_or_garbage(message_contents),
    mutations=_mutations(2),
    resign=st.booleans(),
    damage=_damage,
)
_state_specs = st.one_of(
    [
        st.builds(
            PduSpec,
            kind=st.just("state"),
            event_type=st.just(t),
            content=c,
            mutations=_mutations(1),
            resign=st.booleans(),
            damage=_damage,
        )
        for t, c in CONTENTS.items()
    ]
)
_member_specs = st.builds(
    PduSpec,
    kind=st.just("member"),
    content=CONTENTS["m.room.member"],
    mutations=_mutations(1),
    damage=_damage,
)
_garbage_specs = st.builds(PduSpec, kind=st.just("garbage"), raw=json_values | hostile)


@st.composite
def _pdu_specs(draw: st.DrawFn) -> PduSpec:
    # Messages half the time (the remote's user may send them: some should be accepted),
    # typed state (mostly refused: the remote's user has no power) a quarter.
    kind = draw(st.sampled_from(["message"] * 5 + ["state"] * 3 + ["member", "garbage"]))
    spec = {
        "message": _message_specs,
        "state": _state_specs,
        "member": _member_specs,
        "garbage": _garbage_specs,
    }[kind]
    result: PduSpec = draw(spec)
    return result


pdu_specs = _pdu_specs()


def readable(value: Any) -> Any:
    """``value`` with what would make a whole request unreadable (bare NaN/Infinity, nesting
    past the server's limit) replaced by readable extremes, so the fuzz gets past parsing."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return 2**53
    if isinstance(value, Deep):
        return Deep(min(value.depth, 100), value.kind)
    if isinstance(value, dict):
        return {k: readable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(readable(v) for v in value)
    if isinstance(value, PduSpec):
        return replace(
            value,
            content=readable(value.content),
            mutations=readable(value.mutations),
            raw=readable(value.raw),
        )
    return value


#: The transaction envelope: (origin is right?, fields) — PDUs are made by the test.
txn_envelopes = near_dict(
    required={"origin_server_ts": _weighted(st.integers(0, 2**53), big_numbers, 3)},
    optional={
        "edus": st.lists(
            near_dict(
                optional={
                    "edu_type": st.sampled_from(
                        ["m.typing", "m.receipt", "m.presence", "m.device_list_update", "x"]
                    ),
                    "content": hostile,
                }
            ),
            max_size=3,
        ),
        "pdu_failures": hostile,
    },
)
txn_origins = st.sampled_from(["ours", "ours", "ours", "ours", "other", "missing", "hostile"])
