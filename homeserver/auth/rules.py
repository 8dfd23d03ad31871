"""The authorisation rules of room versions 1-12 (spec: "Authorization rules" of each version).

Entry points:

* :func:`check_auth_rules` — every rule that reads the room's state, given that state as a map
  ``(type, state_key) -> Event``. State resolution calls it with the partially resolved state;
  it only looks up the keys the rules need, so a whole state map is fine too.
* :func:`check_auth_events_for_event` — the rule on the event's own ``auth_events`` list
  (duplicates, unexpected entries, rejected entries, the create event required in v1-v11 and
  forbidden in v12, another room). It is state-independent, so it runs once, on receipt or when
  building; state resolution must not re-run it against resolved state.
* :func:`check_event_auth` — both, for an event and the events its ``auth_events`` name.

The map given to :func:`check_auth_rules` must hold the room's create event under
``("m.room.create", "")`` in every version. In v12 the create event is never among an event's
``auth_events`` (the room ID identifies it), so the caller adds it to the map.

Every refusal raises :class:`AuthError`, whose ``reason`` names the rule that failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nacl.signing import VerifyKey

from homeserver.auth.power_levels import (
    PowerLevel,
    named_power_level,
    power_levels_change_error,
    power_levels_content_error,
    required_power_level,
    room_creators,
    user_power_level,
)
from homeserver.auth.selection import auth_types_for_event
from homeserver.crypto.base64 import decode_base64
from homeserver.crypto.signing import SignatureError, verify_json
from homeserver.events.event import Event
from homeserver.events.state_keys import (
    CREATE_KEY,
    JOIN_RULES_KEY,
    POWER_LEVELS_KEY,
    StateKey,
    member_key,
)
from homeserver.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.types import is_valid_user_id

__all__ = [
    "AuthError",
    "auth_events_map",
    "check_auth_events_for_event",
    "check_auth_rules",
    "check_event_auth",
]


class AuthError(Exception):
    """An event fails the auth rules; ``reason`` names the rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def auth_events_map(events: Iterable[Event]) -> dict[StateKey, Event]:
    """Key state events by ``(type, state_key)``; non-state events are skipped and a later
    event wins over an earlier one with the same key (duplicates are the sanity check's job)."""
    return {event.state_tuple: event for event in events if event.is_state()}


def check_event_auth(
    room_version: RoomVersion,
    event: Event,
    auth_events: Iterable[Event],
    create_event: Event | None = None,
) -> None:
    """Check ``event`` against the events its ``auth_events`` name (all of them, fetched by the
    caller). ``create_event`` is the room's create event, needed in v12 where it is not cited."""
    auth_list = list(auth_events)
    if room_version.room_id_is_create_event_hash and event.type != "m.room.create":
        # The spec checks the room ID before the auth events (v12 rule 2 before rule 3).
        _check_room_id_matches_create(event, create_event)
    check_auth_events_for_event(room_version, event, auth_list)
    state = auth_events_map(auth_list)
    if create_event is not None:
        state.setdefault(CREATE_KEY, create_event)
    check_auth_rules(room_version, event, state)


def check_auth_events_for_event(
    room_version: RoomVersion, event: Event, auth_events: Iterable[Event]
) -> None:
    """The spec's rule on ``auth_events`` itself, over the events the event names there."""
    if event.type == "m.room.create":
        return  # the create rule comes first and ends in "allow"
    by_id = {auth_event.event_id: auth_event for auth_event in auth_events}
    expected = set(
        auth_types_for_event(room_version, event.type, event.sender, event.state_key, event.content)
    )
    seen: set[StateKey] = set()
    for event_id in event.auth_event_ids():
        auth_event = by_id.get(event_id)
        if auth_event is None:
            raise AuthError(f"auth_events: {event_id} was not supplied")
        if auth_event.rejected:
            raise AuthError(f"auth_events: {event_id} was itself rejected")
        if auth_event.room_id != event.room_id:
            raise AuthError(f"auth_events: {event_id} is from another room")
        if not auth_event.is_state():
            raise AuthError(f"auth_events: {event_id} is not a state event")
        key = auth_event.state_tuple
        if key in seen:
            raise AuthError(f"auth_events: duplicate entry for {key}")
        seen.add(key)
        if key == CREATE_KEY and not room_version.create_event_in_auth_events:
            raise AuthError("auth_events: must not list the m.room.create event in this version")
        if key not in expected:
            raise AuthError(f"auth_events: {key} is not an auth event for this event")
    if room_version.create_event_in_auth_events and CREATE_KEY not in seen:
        raise AuthError("auth_events: no m.room.create event")


def check_auth_rules(
    room_version: RoomVersion, event: Event, auth_events: Mapping[tuple[str, str], Event]
) -> None:
    """Raise :class:`AuthError` unless ``event`` passes the auth rules against ``auth_events``."""
    if event.type == "m.room.create":
        _check_create(room_version, event)
        return
    state = _AuthState(room_version, event, auth_events)
    sender = event.sender

    create_domain, sender_domain = _domain(state.create.sender), _domain(sender)
    if state.create.content.get("m.federate") is False and sender_domain != create_domain:
        raise AuthError("m.federate: the room is not federated and the sender is remote")

    if event.type == "m.room.aliases" and room_version.special_case_aliases_auth:
        if event.state_key is None:
            raise AuthError("m.room.aliases: needs a state_key")
        if event.state_key != sender_domain:
            raise AuthError("m.room.aliases: state_key must be the sender's server name")
        return

    if event.type == "m.room.member":
        _check_member(state, event)
        return

    if state.membership(sender) != "join":
        raise AuthError("sender is not joined to the room")

    if event.type == "m.room.third_party_invite":
        if state.power(sender) < state.level("invite"):
            raise AuthError("m.room.third_party_invite: sender is below the invite level")
        return

    required = required_power_level(room_version, event.type, event.is_state(), state.pl)
    if state.power(sender) < required:
        raise AuthError(f"sender's power level is below the required level {required}")

    state_key = event.state_key
    if isinstance(state_key, str) and state_key.startswith("@") and state_key != sender:
        raise AuthError("a state_key starting with '@' must be the sender")

    if event.type == "m.room.power_levels":
        _check_power_levels(state, event)
    elif event.type == "m.room.redaction" and room_version.redaction_auth_rule:
        if state.power(sender) >= state.level("redact"):
            return
        target_domain = _domain(event.redacts)
        if target_domain is None or target_domain != _domain(event.event_id):
            raise AuthError("m.room.redaction: needs the redact level or a same-server target")


def _domain(identifier: object) -> str | None:
    if not isinstance(identifier, str):
        return None
    _, sep, domain = identifier.partition(":")
    return domain if sep else None


def _check_room_id_matches_create(event: Event, create: Event | None) -> None:
    # v12: the room ID is the create event's ID, so this is what ties the event to a room.
    if create is None or create.rejected or event.room_id != "!" + create.event_id[1:]:
        raise AuthError("room_id is not the ID of an accepted m.room.create event")


class _AuthState:
    """The auth events of one check, and the questions the rules ask of them."""

    def __init__(
        self, room_version: RoomVersion, event: Event, events: Mapping[StateKey, Event]
    ) -> None:
        self.version = room_version
        self.event = event
        self.events = events
        create = self.get(CREATE_KEY)
        if create is None:
            raise AuthError("auth_events: no m.room.create event")
        if room_version.room_id_is_create_event_hash:
            _check_room_id_matches_create(event, create)
        self.create = create
        self.pl = self.get(POWER_LEVELS_KEY)

    def get(self, key: StateKey) -> Event | None:
        found = self.events.get(key)
        if found is None:
            return None
        # A mismatch here is a caller's bug (wrong room's state, mis-keyed map); refuse rather
        # than authorise against the wrong facts.
        if found.room_id != self.event.room_id:
            raise AuthError(f"auth_events: {found.event_id} is from another room")
        if not found.is_state() or found.state_tuple != key:
            raise AuthError(f"auth_events: {found.event_id} is not the {key} event")
        return found

    def membership(self, user_id: str) -> str:
        member = self.get(member_key(user_id))
        membership = member.membership if member is not None else None
        return membership if isinstance(membership, str) else "leave"

    def power(self, user_id: str) -> PowerLevel:
        return user_power_level(self.version, user_id, self.create, self.pl)

    def level(self, name: str) -> int:
        return named_power_level(self.version, name, self.pl)

    def join_rule(self) -> str:
        # A room without join rules is invite-only (as Synapse has it; the spec is silent).
        join_rules = self.get(JOIN_RULES_KEY)
        rule = join_rules.content.get("join_rule") if join_rules is not None else None
        return rule if isinstance(rule, str) else "invite"


def _check_create(room_version: RoomVersion, event: Event) -> None:
    if event.prev_event_ids():
        raise AuthError("m.room.create: must not have prev_events")
    if room_version.room_id_is_create_event_hash:
        if "room_id" in event.pdu:
            raise AuthError("m.room.create: must not have a room_id in this version")
    else:
        room_domain = _domain(event.pdu.get("room_id"))
        if room_domain is None or room_domain != _domain(event.sender):
            raise AuthError("m.room.create: room_id's server must be the sender's server")
    content = event.content
    if "room_version" in content and content["room_version"] not in KNOWN_ROOM_VERSIONS:
        raise AuthError("m.room.create: unknown room_version")
    if not room_version.implicit_room_creator and "creator" not in content:
        raise AuthError("m.room.create: no creator")
    if room_version.has_additional_creators and "additional_creators" in content:
        additional = content["additional_creators"]
        if not isinstance(additional, list) or not all(
            isinstance(user, str) and is_valid_user_id(user, historical=True) for user in additional
        ):
            raise AuthError("m.room.create: additional_creators must be a list of user IDs")


def _check_member(state: _AuthState, event: Event) -> None:
    version, content, sender = state.version, event.content, event.sender
    target = event.state_key
    if target is None or "membership" not in content:
        raise AuthError("m.room.member: needs a state_key and content.membership")
    membership = content["membership"]

    via = content.get("join_authorised_via_users_server")
    if version.restricted_join_rule and via is not None:
        # Only the presence of the signature is visible here; the signature itself was
        # verified with the server's key when the event was received or signed.
        signatures = event.signatures
        via_domain = _domain(via)
        if (
            not isinstance(signatures, Mapping)
            or via_domain is None
            or not signatures.get(via_domain)
        ):
            raise AuthError("join_authorised_via_users_server: not signed by that user's server")

    if membership == "join":
        _check_join(state, event, target)
    elif membership == "invite":
        _check_invite(state, event, target)
    elif membership == "leave":
        _check_leave(state, sender, target)
    elif membership == "ban":
        if state.membership(sender) != "join":
            raise AuthError("ban: sender is not joined")
        sender_power = state.power(sender)
        if sender_power < state.level("ban") or state.power(target) >= sender_power:
            raise AuthError("ban: needs the ban level and a higher power level than the target")
    elif membership == "knock" and version.knock_join_rule:
        rule = state.join_rule()
        if rule != "knock" and not (
            rule == "knock_restricted" and version.knock_restricted_join_rule
        ):
            raise AuthError(f"knock: join rule {rule!r} does not allow knocking")
        if sender != target:
            raise AuthError("knock: sender must be the state_key")
        if state.membership(sender) in ("ban", "invite", "join"):
            raise AuthError(f"knock: sender is already {state.membership(sender)}")
    else:
        raise AuthError(f"m.room.member: unknown membership {membership!r}")


def _check_join(state: _AuthState, event: Event, target: str) -> None:
    version, create = state.version, state.create
    prev = event.prev_event_ids()
    # The creator's own first join, right after the create event, needs nothing else.
    creator = create.sender if version.implicit_room_creator else create.content.get("creator")
    if len(prev) == 1 and prev[0] == create.event_id and target == creator:
        return
    if event.sender != target:
        raise AuthError("join: sender must be the state_key")
    current = state.membership(target)
    if current == "ban":
        raise AuthError("join: sender is banned")
    rule = state.join_rule()
    if rule == "public":
        return
    if rule == "invite" or (rule == "knock" and version.knock_join_rule):
        if current in ("invite", "join"):
            return
        raise AuthError(f"join: join rule {rule!r} needs an invite")
    if (rule == "restricted" and version.restricted_join_rule) or (
        rule == "knock_restricted" and version.knock_restricted_join_rule
    ):
        if current in ("invite", "join"):
            return
        via = event.content.get("join_authorised_via_users_server")
        if not isinstance(via, str):
            raise AuthError("join: restricted room needs join_authorised_via_users_server")
        if state.membership(via) != "join":
            raise AuthError("join: join_authorised_via_users_server user is not joined")
        if state.power(via) < state.level("invite"):
            raise AuthError("join: join_authorised_via_users_server user is below the invite level")
        return
    raise AuthError(f"join: join rule {rule!r} does not allow joining")


def _check_invite(state: _AuthState, event: Event, target: str) -> None:
    sender = event.sender
    if "third_party_invite" in event.content:
        _check_third_party_invite(state, event, target)
        return
    if state.membership(sender) != "join":
        raise AuthError("invite: sender is not joined")
    current = state.membership(target)
    if current in ("join", "ban"):
        raise AuthError(f"invite: target is already {current}")
    if state.power(sender) < state.level("invite"):
        raise AuthError("invite: sender is below the invite level")


def _check_third_party_invite(state: _AuthState, event: Event, target: str) -> None:
    if state.membership(target) == "ban":
        raise AuthError("third_party_invite: target is banned")
    invite = event.content["third_party_invite"]
    signed = invite.get("signed") if isinstance(invite, Mapping) else None
    if not isinstance(signed, Mapping):
        raise AuthError("third_party_invite: no signed object")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError("third_party_invite: signed needs mxid and token")
    if mxid != target:
        raise AuthError("third_party_invite: signed mxid is not the state_key")
    invite_event = state.get(("m.room.third_party_invite", token))
    if invite_event is None:
        raise AuthError("third_party_invite: no m.room.third_party_invite for the token")
    if invite_event.sender != event.sender:
        raise AuthError("third_party_invite: sender differs from the m.room.third_party_invite")
    if not _signed_by_any(signed, _public_keys(invite_event.content)):
        raise AuthError("third_party_invite: no valid signature by the invite's public keys")


def _public_keys(content: Mapping[str, Any]) -> list[VerifyKey]:
    encoded = [content.get("public_key")]
    public_keys = content.get("public_keys")
    if isinstance(public_keys, list):
        encoded += [entry.get("public_key") for entry in public_keys if isinstance(entry, Mapping)]
    keys = []
    for text in encoded:
        if not isinstance(text, str):
            continue
        try:
            keys.append(VerifyKey(decode_base64(text)))
        except ValueError:  # bad base64, or not 32 bytes (nacl raises a ValueError subclass)
            continue
    return keys


def _signed_by_any(signed: Mapping[str, Any], keys: list[VerifyKey]) -> bool:
    signatures = signed.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    for server, by_key_id in signatures.items():
        if not isinstance(by_key_id, Mapping):
            continue
        for key_id in by_key_id:
            if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                continue
            for key in keys:
                try:
                    verify_json(signed, server, key_id, key)
                except SignatureError:
                    continue
                return True
    return False


def _check_leave(state: _AuthState, sender: str, target: str) -> None:
    current = state.membership(target)
    if sender == target:
        # Withdrawing a knock is a leave too, from v7 where knocks exist.
        if current not in ("invite", "join") and not (
            current == "knock" and state.version.knock_join_rule
        ):
            raise AuthError(f"leave: cannot leave from membership {current!r}")
        return
    if state.membership(sender) != "join":
        raise AuthError("leave: sender is not joined")
    sender_power = state.power(sender)
    if current == "ban" and sender_power < state.level("ban"):
        raise AuthError("leave: unbanning needs the ban level")
    if sender_power < state.level("kick") or state.power(target) >= sender_power:
        raise AuthError("leave: kicking needs the kick level and a higher level than the target")


def _check_power_levels(state: _AuthState, event: Event) -> None:
    version, content, sender = state.version, event.content, event.sender
    error = power_levels_content_error(version, content)
    if error is not None:
        raise AuthError(f"m.room.power_levels: {error}")
    users = content.get("users", {})
    if version.creators_have_infinite_power:
        listed = room_creators(version, state.create).intersection(users)
        if listed:
            raise AuthError(f"m.room.power_levels: users must not list creators {sorted(listed)}")
    if state.pl is not None:
        error = power_levels_change_error(
            version, state.pl.content, content, sender, state.power(sender)
        )
        if error is not None:
            raise AuthError(f"m.room.power_levels: {error}")
