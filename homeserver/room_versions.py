"""The table of room versions.

Each version is one frozen record of feature flags, built as the previous version plus the fields
it changes. Code asks a record about a feature (``version.strict_canonical_json``), never compares
version strings, so `/capabilities`, room creation, upgrade validation, the event code and the
auth rules all read the same facts from here.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass


class Disposition(enum.StrEnum):
    STABLE = "stable"
    UNSTABLE = "unstable"


class EventIdFormat(enum.Enum):
    """How an event gets its ID."""

    #: ``$opaque:server_name``, carried in the event itself (v1, v2).
    OPAQUE_WITH_DOMAIN = 1
    #: ``$`` + standard unpadded base64 of the reference hash (v3).
    REFERENCE_HASH_STANDARD = 3
    #: ``$`` + URL-safe unpadded base64 of the reference hash (v4+).
    REFERENCE_HASH_URLSAFE = 4


class StateResAlgorithm(enum.Enum):
    V1 = "v1"
    V2 = "v2"
    #: v2 plus the conflicted state subgraph, iterative auth from an empty state (room v12).
    V2_1 = "v2.1"


@dataclass(frozen=True, slots=True)
class RedactionRules:
    """What the redaction algorithm keeps (spec: "Redactions", per version)."""

    #: top-level ``origin``, ``membership`` and ``prev_state`` survive (R1-R9; gone in R11).
    keeps_origin_membership_prev_state: bool = True
    #: ``m.room.aliases`` keeps ``aliases`` (R1 only; removed in R6).
    keeps_aliases_content: bool = True
    #: ``m.room.join_rules`` keeps ``allow`` (R8+).
    keeps_join_rules_allow: bool = False
    #: ``m.room.member`` keeps ``join_authorised_via_users_server`` (R9+).
    keeps_join_authorised_via_users_server: bool = False
    #: ``m.room.member`` keeps ``third_party_invite.signed`` (R11+).
    keeps_third_party_invite_signed: bool = False
    #: ``m.room.create`` keeps its whole content rather than only ``creator`` (R11+).
    keeps_all_create_content: bool = False
    #: ``m.room.power_levels`` keeps ``invite`` (R11+).
    keeps_power_levels_invite: bool = False
    #: ``m.room.redaction`` keeps ``content.redacts`` (R11+).
    keeps_redaction_redacts: bool = False


REDACTION_R1 = RedactionRules()
REDACTION_R6 = dataclasses.replace(REDACTION_R1, keeps_aliases_content=False)
REDACTION_R8 = dataclasses.replace(REDACTION_R6, keeps_join_rules_allow=True)
REDACTION_R9 = dataclasses.replace(REDACTION_R8, keeps_join_authorised_via_users_server=True)
REDACTION_R11 = dataclasses.replace(
    REDACTION_R9,
    keeps_origin_membership_prev_state=False,
    keeps_third_party_invite_signed=True,
    keeps_all_create_content=True,
    keeps_power_levels_invite=True,
    keeps_redaction_redacts=True,
)

MAX_DEPTH_V1 = 2**63 - 1
MAX_DEPTH_V6 = 2**53 - 1


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    disposition: Disposition
    event_id_format: EventIdFormat
    redaction_rules: RedactionRules
    state_res: StateResAlgorithm

    # --- event format ---
    #: ``auth_events`` / ``prev_events`` are ``[[event_id, {"sha256": ...}], ...]`` (v1, v2).
    event_refs_carry_hashes: bool = True
    #: ``redacts`` is a top-level key of a redaction (v1-v10); from v11 it lives in ``content``.
    top_level_redacts: bool = True
    #: largest allowed ``depth``.
    max_depth: int = MAX_DEPTH_V1

    # --- signatures and JSON ---
    #: the server named in an ``$opaque:server`` event ID must sign too (v1, v2).
    event_id_domain_must_sign: bool = True
    #: signing keys must be valid at the event's ``origin_server_ts`` (v5+).
    enforce_key_validity: bool = False
    #: no floats, integers within +-(2^53-1) (v6+).
    strict_canonical_json: bool = False
    #: 255-*byte* limits are hard failures rather than rejections (v11+, as Synapse).
    strict_byte_size_limits: bool = False

    # --- auth rules ---
    #: the ``m.room.aliases`` auth rule (v1-v5).
    special_case_aliases_auth: bool = True
    #: the redaction auth rule (redact level or same domain) is part of auth (v1, v2).
    redaction_auth_rule: bool = True
    #: PL changes to ``notifications`` are checked (v6+).
    limit_notifications_power_levels: bool = False
    #: power levels may be floats (truncated) (v1-v5).
    float_power_levels_allowed: bool = True
    #: power levels must be JSON integers, strings refused (v10+).
    enforce_int_power_levels: bool = False
    #: ``knock`` membership and join rule (v7+).
    knock_join_rule: bool = False
    #: ``restricted`` join rule and ``join_authorised_via_users_server`` (v8+).
    restricted_join_rule: bool = False
    #: ``knock_restricted`` join rule (v10+).
    knock_restricted_join_rule: bool = False
    #: the create event need not carry ``creator``; its ``sender`` is the creator (v11+).
    implicit_room_creator: bool = False

    # --- v12 "Hydra" ---
    #: creators (create sender + ``additional_creators``) hold infinite power (v12).
    creators_have_infinite_power: bool = False
    #: ``m.room.create`` may list ``additional_creators`` (v12).
    has_additional_creators: bool = False
    #: the room ID is ``!`` + the create event's reference hash; the create event has no
    #: ``room_id`` and is never an auth event (v12).
    room_id_is_create_event_hash: bool = False

    @property
    def create_event_in_auth_events(self) -> bool:
        return not self.room_id_is_create_event_hash

    @property
    def is_stable(self) -> bool:
        return self.disposition is Disposition.STABLE


V1 = RoomVersion(
    identifier="1",
    disposition=Disposition.STABLE,
    event_id_format=EventIdFormat.OPAQUE_WITH_DOMAIN,
    redaction_rules=REDACTION_R1,
    state_res=StateResAlgorithm.V1,
)
V2 = dataclasses.replace(V1, identifier="2", state_res=StateResAlgorithm.V2)
V3 = dataclasses.replace(
    V2,
    identifier="3",
    event_id_format=EventIdFormat.REFERENCE_HASH_STANDARD,
    event_refs_carry_hashes=False,
    event_id_domain_must_sign=False,
    redaction_auth_rule=False,
)
V4 = dataclasses.replace(V3, identifier="4", event_id_format=EventIdFormat.REFERENCE_HASH_URLSAFE)
V5 = dataclasses.replace(V4, identifier="5", enforce_key_validity=True)
V6 = dataclasses.replace(
    V5,
    identifier="6",
    redaction_rules=REDACTION_R6,
    max_depth=MAX_DEPTH_V6,
    strict_canonical_json=True,
    special_case_aliases_auth=False,
    limit_notifications_power_levels=True,
    float_power_levels_allowed=False,
)
V7 = dataclasses.replace(V6, identifier="7", knock_join_rule=True)
V8 = dataclasses.replace(
    V7, identifier="8", redaction_rules=REDACTION_R8, restricted_join_rule=True
)
V9 = dataclasses.replace(V8, identifier="9", redaction_rules=REDACTION_R9)
V10 = dataclasses.replace(
    V9, identifier="10", knock_restricted_join_rule=True, enforce_int_power_levels=True
)
V11 = dataclasses.replace(
    V10,
    identifier="11",
    redaction_rules=REDACTION_R11,
    top_level_redacts=False,
    strict_byte_size_limits=True,
    implicit_room_creator=True,
)
V12 = dataclasses.replace(
    V11,
    identifier="12",
    state_res=StateResAlgorithm.V2_1,
    creators_have_infinite_power=True,
    has_additional_creators=True,
    room_id_is_create_event_hash=True,
)

KNOWN_ROOM_VERSIONS: Mapping[str, RoomVersion] = {
    v.identifier: v for v in (V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12)
}

#: The spec says servers SHOULD create new rooms with version 12.
DEFAULT_ROOM_VERSION = "12"


class UnsupportedRoomVersion(Exception):
    def __init__(self, identifier: object) -> None:
        super().__init__(f"unsupported room version {identifier!r}")
        self.identifier = identifier


def get_room_version(identifier: object) -> RoomVersion:
    """The record for ``identifier``; raises :class:`UnsupportedRoomVersion` if unknown."""
    if isinstance(identifier, str):
        version = KNOWN_ROOM_VERSIONS.get(identifier)
        if version is not None:
            return version
    raise UnsupportedRoomVersion(identifier)


def capabilities(default_identifier: str) -> dict[str, object]:
    """The ``m.room_versions`` capability, from the table."""
    return {
        "default": default_identifier,
        "available": {v.identifier: str(v.disposition) for v in KNOWN_ROOM_VERSIONS.values()},
    }
