"""The plan of a room upgrade (DESIGN.md §3.3 step 3): pure, from a snapshot of the old room.

What the new room gets, in this order (every event passes the auth rules as built, because until
a power-levels event exists the room's creator — the upgrader — holds full power):

1. ``m.room.create``: the target ``room_version``, ``predecessor {room_id}`` (the builder adds
   the tombstone's ``event_id`` for pre-v12 targets), the old ``type`` and ``m.federate: false``,
   ``additional_creators`` from the request (v12 targets), ``creator`` where the version has it;
2. the upgrader's join (with their old-room display name and avatar);
3. the copied state: join rules (a restricted room's ``allow`` list naming the old room stays as
   it is), history visibility, guest access, server ACL, encryption, name, avatar, topic, the
   canonical alias (its local aliases only: they move with the room), pinned events, a
   space's ``m.space.child`` events and the room's ``m.space.parent`` events (the links *to*
   the old room in other rooms follow in ``upgrade_spaces.py``). Nothing else: no preset
   defaults;
4. the bans, re-issued by the upgrader with their original content;
5. the members: local joined members are joined (invited first unless the join rule is
   ``public``), pending invitees re-invited, local knockers knock again (as themselves, when the
   join rule is ``knock``/``knock_restricted``; a remote knock stays in the old room), remote
   joined members invited (the builder's caller queues those invites in the federation
   outbox);
6. last, the old room's power levels, with levels normalised to integers and adjusted for the
   target's creators (:func:`copy_power_levels`).

In the old room, after the tombstone: the canonical alias without the moved local aliases, and
the power levels restricted so ordinary members can no longer talk or invite
(:func:`restricted_power_levels`). Both are best effort: if the upgrader may not send them the
upgrade goes on without (as Synapse).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from homeserver.auth.power_levels import DEFAULT_LEVELS, NAMED_LEVELS, parse_power_level
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.events.state_keys import (
    CANONICAL_ALIAS_KEY,
    CREATE_KEY,
    JOIN_RULES_KEY,
    POWER_LEVELS_KEY,
    StateKey,
)
from homeserver.room_versions import RoomVersion
from homeserver.types import domain_of

TOMBSTONE_BODY = "This room has been replaced"
#: The level v12 room creation gives ``m.room.tombstone``; an upgrade into v12 raises it to this
#: (at least) so that only the creators can upgrade again (Synapse keeps 100: issue #18830).
V12_TOMBSTONE_LEVEL = 150

#: State copied verbatim (state key ""), in the order it is sent into the new room.
COPIED_STATE_TYPES: tuple[str, ...] = (
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.pinned_events",
)
SPACE_CHILD = "m.space.child"
SPACE_PARENT = "m.space.parent"
SPACE_ROOM_TYPE = "m.space"
#: Join rules under which a knock can be made (the new room's are the old room's).
KNOCK_JOIN_RULES = frozenset({"knock", "knock_restricted"})
#: Profile fields a moved member's join carries over from their old-room membership.
PROFILE_FIELDS = ("displayname", "avatar_url")


@dataclass(frozen=True, slots=True)
class OldRoomSnapshot:
    """What the plan reads: the old room's current state at one state group."""

    room_id: str
    room_version: RoomVersion
    is_public: bool
    #: the current state group the snapshot was taken at (compared again at commit).
    state_group: int | None
    #: the state events the plan reads: create, power levels, the copied types, canonical
    #: alias, every membership and (for spaces) the children.
    state: Mapping[StateKey, Event]
    #: the old room's forward extremities (the tombstone's prev events).
    extremities: tuple[Event, ...]
    #: local aliases pointing at the old room.
    local_aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UpgradePolicy:
    server_name: str
    auto_join_local_members: bool = True
    invite_remote_members: bool = True


@dataclass(frozen=True, slots=True)
class PlannedDraft:
    draft: EventDraft
    #: a required event that cannot be built fails the upgrade; an optional one (a ban, a
    #: member's move, a copied state event) is skipped and logged.
    required: bool = False


@dataclass(frozen=True, slots=True)
class UpgradePlan:
    upgrader: str
    new_version: RoomVersion
    #: the new create event's content; ``predecessor`` holds the old room ID only.
    create_content: dict[str, Any]
    #: the new room's events after the create event, in order.
    new_room: tuple[PlannedDraft, ...]
    #: the old room's events after the tombstone, in order (best effort).
    old_room: tuple[EventDraft, ...]
    #: whether the new room goes into the directory (the old one leaves it).
    publish: bool
    #: local users joined to the old room (their tags and push rules are copied).
    local_members: tuple[str, ...]
    #: local users to wake: members and invitees.
    notify_users: tuple[str, ...]


def tombstone_draft(upgrader: str, replacement_room: str) -> EventDraft:
    return EventDraft(
        "m.room.tombstone",
        upgrader,
        {"body": TOMBSTONE_BODY, "replacement_room": replacement_room},
        state_key="",
    )


def new_create_content(
    old_create: Event,
    old_room_id: str,
    new_version: RoomVersion,
    upgrader: str,
    extra: Iterable[str],
) -> dict[str, Any]:
    content: dict[str, Any] = {"room_version": new_version.identifier}
    if not new_version.implicit_room_creator:
        content["creator"] = upgrader
    room_type = old_create.content.get("type")
    if isinstance(room_type, str):
        content["type"] = room_type
    if old_create.content.get("m.federate") is False:
        content["m.federate"] = False
    additional = [user for user in dict.fromkeys(extra) if user != upgrader]
    if new_version.has_additional_creators and additional:
        content["additional_creators"] = additional
    content["predecessor"] = {"room_id": old_room_id}
    return content


def _creators_of(version: RoomVersion, create: Event) -> set[str]:
    """The v12-style creators of a room (infinitely powerful); empty before v12."""
    if not version.creators_have_infinite_power:
        return set()
    creators = {create.sender}
    extra = create.content.get("additional_creators")
    if isinstance(extra, list):
        creators.update(u for u in extra if isinstance(u, str))
    return creators


def _levels(version: RoomVersion, entries: Any) -> dict[str, int]:
    if not isinstance(entries, Mapping):
        return {}
    out: dict[str, int] = {}
    for key, value in entries.items():
        level = parse_power_level(version, value)
        if level is not None:  # an unreadable level cannot be carried into a stricter version
            out[key] = level
    return out


def copy_power_levels(
    content: Mapping[str, Any],
    *,
    old_version: RoomVersion,
    old_creators: set[str],
    new_version: RoomVersion,
    new_creators: set[str],
) -> dict[str, Any]:
    """The old room's power levels for the new room.

    * Levels are normalised to integers (``"50"`` → 50: v10+ accept integers only).
    * Old v12 creators who are not creators of the new room had infinite power and no
      ``users`` entry; they get the highest level the content mentions (at least 100), so they
      keep every power a level can give (Synapse drops them to ``users_default``: #18810).
    * v12 targets: the new creators are removed from ``users`` (the auth rules refuse them
      there), and ``m.room.tombstone`` is raised to at least 150 and above ``state_default``, so
      only creators can upgrade again, as in a room created in v12 (Synapse: #18830).
    """
    out: dict[str, Any] = {}
    for key, value in content.items():
        if key in NAMED_LEVELS:
            level = parse_power_level(old_version, value)
            if level is not None:
                out[key] = level
        elif key in ("users", "events", "notifications"):
            out[key] = _levels(old_version, value)
        else:
            out[key] = copy.deepcopy(value)
    users: dict[str, int] = out.get("users", {})
    demoted = sorted(old_creators - new_creators - set(users))
    if demoted:
        top = max(
            [100, *users.values(), *_levels(new_version, out.get("events")).values()]
            + [v for k, v in out.items() if k in NAMED_LEVELS]
        )
        users = {**users, **dict.fromkeys(demoted, top)}
        out["users"] = users
    if new_version.creators_have_infinite_power:
        if "users" in out:
            out["users"] = {u: lvl for u, lvl in users.items() if u not in new_creators}
        state_default = out.get("state_default", DEFAULT_LEVELS["state_default"])
        events = dict(out.get("events", {}))
        current = events.get("m.room.tombstone", state_default)
        events["m.room.tombstone"] = max(current, state_default + 1, V12_TOMBSTONE_LEVEL)
        out["events"] = events
    return out


def restricted_power_levels(
    version: RoomVersion, content: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The old room's power levels with ``events_default`` and ``invite`` raised to
    max(50, users_default + 1) — or None when they are there already."""

    def level(key: str) -> int:
        found = parse_power_level(version, content.get(key, DEFAULT_LEVELS[key]))
        return DEFAULT_LEVELS[key] if found is None else found

    restricted = max(50, level("users_default") + 1)
    updated = dict(copy.deepcopy(content))
    for key in ("events_default", "invite"):
        if level(key) < restricted:
            updated[key] = restricted
    return None if updated == content else updated


def split_canonical_alias(
    content: Mapping[str, Any], server_name: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(new room's canonical alias with only local aliases, old room's without them); either
    is None when there is nothing to send."""

    def local(alias: object) -> bool:
        return isinstance(alias, str) and domain_of(alias) == server_name

    alias = content.get("alias")
    alt = content.get("alt_aliases")
    alt_list = [a for a in alt if isinstance(a, str)] if isinstance(alt, list) else []
    new: dict[str, Any] = {}
    if local(alias):
        new["alias"] = alias
    if any(local(a) for a in alt_list):
        new["alt_aliases"] = [a for a in alt_list if local(a)]
    if not new:
        return None, None
    old = {k: copy.deepcopy(v) for k, v in content.items() if k not in ("alias", "alt_aliases")}
    if alias is not None and not local(alias):
        old["alias"] = alias
    remote_alt = [a for a in alt_list if not local(a)]
    if remote_alt:
        old["alt_aliases"] = remote_alt
    return new, old


def _has_content(event: Event | None) -> bool:
    return event is not None and bool(event.content)


def plan_upgrade(
    snapshot: OldRoomSnapshot,
    *,
    upgrader: str,
    new_version: RoomVersion,
    additional_creators: Iterable[str],
    policy: UpgradePolicy,
) -> UpgradePlan:
    """The new room's events and the old room's, in the order of the module docstring."""
    state = snapshot.state
    old_create = state[CREATE_KEY]
    create_content = new_create_content(
        old_create, snapshot.room_id, new_version, upgrader, additional_creators
    )
    new_creators = {upgrader}
    if new_version.has_additional_creators:
        new_creators.update(create_content.get("additional_creators", []))
    members = {sk: e for (t, sk), e in state.items() if t == "m.room.member"}

    drafts = [_upgrader_join(upgrader, members.get(upgrader))]
    drafts += _copied_state(state, upgrader)
    new_alias, old_alias = _split_alias(state, policy.server_name)
    if new_alias is not None:
        drafts.append(PlannedDraft(_draft(upgrader, "m.room.canonical_alias", new_alias)))
    if old_create.content.get("type") == SPACE_ROOM_TYPE:
        drafts += _space_links(state, upgrader, SPACE_CHILD)
    drafts += _space_links(state, upgrader, SPACE_PARENT)
    drafts += _bans(members, upgrader)
    moves = _moved_members(state, members, upgrader, policy)
    drafts += moves.drafts
    old_drafts: list[EventDraft] = []
    if old_alias is not None:
        old_drafts.append(EventDraft("m.room.canonical_alias", upgrader, old_alias, state_key=""))
    new_pl, old_pl = _power_levels(snapshot, upgrader, new_version, new_creators)
    if new_pl is not None:
        drafts.append(new_pl)
    if old_pl is not None:
        old_drafts.append(old_pl)

    return UpgradePlan(
        upgrader=upgrader,
        new_version=new_version,
        create_content=create_content,
        new_room=tuple(drafts),
        old_room=tuple(old_drafts),
        publish=snapshot.is_public,
        local_members=tuple(moves.local_joined),
        notify_users=tuple(dict.fromkeys(moves.notify_users)),
    )


def _power_levels(
    snapshot: OldRoomSnapshot, upgrader: str, new_version: RoomVersion, new_creators: set[str]
) -> tuple[PlannedDraft | None, EventDraft | None]:
    """The new room's power levels (the old ones adjusted to the target's creators; required),
    and the old room's restricted ones after the tombstone; None where there is none."""
    old_pl = snapshot.state.get(POWER_LEVELS_KEY)
    if old_pl is None:
        return None, None
    pl_content = copy_power_levels(
        old_pl.content,
        old_version=snapshot.room_version,
        old_creators=_creators_of(snapshot.room_version, snapshot.state[CREATE_KEY]),
        new_version=new_version,
        new_creators=new_creators if new_version.creators_have_infinite_power else set(),
    )
    new_pl = PlannedDraft(_draft(upgrader, "m.room.power_levels", pl_content), True)
    restricted = restricted_power_levels(snapshot.room_version, old_pl.content)
    if restricted is None:
        return new_pl, None
    return new_pl, EventDraft("m.room.power_levels", upgrader, restricted, state_key="")


def _draft(
    upgrader: str, event_type: str, content: Mapping[str, Any], state_key: str = ""
) -> EventDraft:
    """A state event the upgrader sends into the new room (a copy of ``content``)."""
    return EventDraft(event_type, upgrader, copy.deepcopy(dict(content)), state_key=state_key)


def _upgrader_join(upgrader: str, old_membership: Event | None) -> PlannedDraft:
    """The upgrader's join, with their old-room profile: required."""
    content = {"membership": "join", **_profile(old_membership)}
    return PlannedDraft(_draft(upgrader, "m.room.member", content, upgrader), True)


def _copied_state(state: Mapping[StateKey, Event], upgrader: str) -> list[PlannedDraft]:
    """The state copied verbatim (:data:`COPIED_STATE_TYPES`), in that order; empty contents
    are left out."""
    drafts: list[PlannedDraft] = []
    for event_type in COPIED_STATE_TYPES:
        event = state.get((event_type, ""))
        if _has_content(event):
            assert event is not None
            drafts.append(PlannedDraft(_draft(upgrader, event_type, event.content)))
    return drafts


def _split_alias(
    state: Mapping[StateKey, Event], server_name: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The canonical alias content for the new room and for the old one after the tombstone
    (see :func:`split_canonical_alias`); (None, None) when the room has none."""
    alias_event = state.get(CANONICAL_ALIAS_KEY)
    if not _has_content(alias_event):
        return None, None
    assert alias_event is not None
    return split_canonical_alias(alias_event.content, server_name)


def _space_links(
    state: Mapping[StateKey, Event], upgrader: str, link_type: str
) -> list[PlannedDraft]:
    """A space's ``m.space.child`` events or a room's ``m.space.parent`` events, by linked
    room ID (removed links, with empty content, are left out)."""
    drafts: list[PlannedDraft] = []
    for linked in sorted(sk for (t, sk) in state if t == link_type):
        event = state[(link_type, linked)]
        if _has_content(event):
            drafts.append(PlannedDraft(_draft(upgrader, link_type, event.content, linked)))
    return drafts


def _bans(members: Mapping[str, Event], upgrader: str) -> list[PlannedDraft]:
    """The bans, re-issued by the upgrader with their original content."""
    return [
        PlannedDraft(_draft(upgrader, "m.room.member", members[user_id].content, user_id))
        for user_id in sorted(members)
        if members[user_id].membership == "ban" and user_id != upgrader
    ]


@dataclass(slots=True)
class _MemberMoves:
    drafts: list[PlannedDraft]
    #: local users joined to the old room (the upgrader first).
    local_joined: list[str]
    #: local users to wake (the upgrader first; may repeat).
    notify_users: list[str]


def _moved_members(
    state: Mapping[StateKey, Event],
    members: Mapping[str, Event],
    upgrader: str,
    policy: UpgradePolicy,
) -> _MemberMoves:
    """Local joined members joined (invited first unless the room is public), pending local
    invitees re-invited, remote members invited when the room federates (their servers get
    the invites through the outbox)."""
    join_rules = state.get(JOIN_RULES_KEY)
    join_rule = join_rules.content.get("join_rule") if join_rules is not None else "invite"
    invite_first = join_rule != "public"
    federates = state[CREATE_KEY].content.get("m.federate") is not False
    moves = _MemberMoves([], [], [upgrader])
    for user_id in sorted(members):
        membership = members[user_id].membership
        is_local = domain_of(user_id) == policy.server_name
        if user_id == upgrader:
            moves.local_joined.append(user_id)
            continue
        if membership == "join" and is_local:
            moves.local_joined.append(user_id)
            moves.notify_users.append(user_id)
            if not policy.auto_join_local_members:
                continue
            moved = _profile(members[user_id])
            if invite_first:
                invite = _draft(
                    upgrader, "m.room.member", {"membership": "invite", **moved}, user_id
                )
                moves.drafts.append(PlannedDraft(invite))
            join = EventDraft("m.room.member", user_id, {"membership": "join", **moved}, user_id)
            moves.drafts.append(PlannedDraft(join))
        elif membership in ("join", "invite") and not is_local:
            if policy.invite_remote_members and federates:
                invite = _draft(upgrader, "m.room.member", {"membership": "invite"}, user_id)
                moves.drafts.append(PlannedDraft(invite))
        elif membership == "invite" and is_local and policy.auto_join_local_members:
            # A pending invite follows the room (the old one stays, it is the user's to answer).
            moves.notify_users.append(user_id)
            invite = _draft(upgrader, "m.room.member", {"membership": "invite"}, user_id)
            moves.drafts.append(PlannedDraft(invite))
        elif (
            membership == "knock"
            and is_local
            and policy.auto_join_local_members
            and join_rule in KNOCK_JOIN_RULES
        ):
            # A pending knock follows the room as the knocker's own knock (we hold our users'
            # keys); a remote knocker's cannot be made for them, and an invite would answer a
            # knock nobody has accepted: theirs stays in the old room.
            moves.notify_users.append(user_id)
            content = {"membership": "knock", **_knock_fields(members[user_id])}
            knock = EventDraft("m.room.member", user_id, content, user_id)
            moves.drafts.append(PlannedDraft(knock))
    return moves


def _knock_fields(knock: Event) -> dict[str, str]:
    """What a moved knock keeps: the knocker's profile and reason."""
    fields = _profile(knock)
    reason = knock.content.get("reason")
    if isinstance(reason, str):
        fields["reason"] = reason
    return fields


def _profile(member: Event | None) -> dict[str, str]:
    if member is None:
        return {}
    return {k: v for k in PROFILE_FIELDS if isinstance(v := member.content.get(k), str)}
