"""The upgrade preview (``GET /_homeserver/admin/v1/rooms/{roomId}/upgrade_plan``): what
``POST /rooms/{roomId}/upgrade`` would do, computed by the upgrade's own code and then thrown
away — nothing is written, locked or published.

The steps are the upgrade's own (:meth:`RoomUpgradeService.preview`): its check and body
parsing, its refusals for a room that is not ``active``, its snapshot, plan and build. This
module picks the upgrader when none is named and describes the result. The answer describes the
built events, so an event the auth rules would refuse (and the upgrade would skip) is missing
here too, and listed under ``skipped``.

Two things cannot be known in advance and are left out: the new room's ID (random, or the hash
of a create event whose timestamp is the upgrade's) and so the tombstone's ``replacement_room``
and the create event's ``predecessor.event_id``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any

from homeserver.errors import BadRequest, Codes, MatrixError, NotFound
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.events.state_keys import (
    CANONICAL_ALIAS_KEY,
    MEMBER,
    POWER_LEVELS,
    POWER_LEVELS_KEY,
)
from homeserver.rooms.upgrade import RoomUpgradeService
from homeserver.rooms.upgrade_build import BuiltUpgrade, UpgradeBuildError
from homeserver.rooms.upgrade_plan import OldRoomSnapshot, UpgradePlan
from homeserver.storage import Store
from homeserver.storage.rooms import RoomRecord
from homeserver.types import domain_of, room_id_error, user_id_error


class UpgradePreview:
    def __init__(self, store: Store, upgrades: RoomUpgradeService, server_name: str) -> None:
        self.store = store
        self.upgrades = upgrades
        self.server_name = server_name

    async def preview(
        self, room_id: str, new_version: str | None, *, upgrader: str | None, admin: str
    ) -> dict[str, Any]:
        """The plan of upgrading ``room_id`` to ``new_version`` by ``upgrader`` (default: the
        joined local member with the most power, the admin first among equals), or the error
        the upgrade would answer."""
        room = await self._room(room_id)
        if upgrader is None:
            upgrader = await self._default_upgrader(room, admin)
        else:
            self._check_upgrader(upgrader)
        body = {} if new_version is None else {"new_version": new_version}
        try:
            previewed = await self.upgrades.preview(upgrader, room_id, body)
        except UpgradeBuildError as e:  # the upgrade would fail with 500 "could not be completed"
            raise MatrixError(
                HTTPStatus.CONFLICT, Codes.BAD_STATE, f"The upgrade would fail: {e}"
            ) from None
        return describe_upgrade(
            previewed.snapshot, previewed.plan, previewed.built, self.server_name
        )

    async def _room(self, room_id: str) -> RoomRecord:
        reason = room_id_error(room_id)
        if reason:
            raise BadRequest(reason, Codes.INVALID_PARAM)
        room = await self.store.rooms.get_room(room_id)
        if room is None:
            raise NotFound(f"Unknown room id {room_id}")
        return room

    def _check_upgrader(self, user_id: str) -> None:
        reason = user_id_error(user_id)
        if reason:
            raise BadRequest(f"user_id: {reason}", Codes.INVALID_PARAM)
        if domain_of(user_id) != self.server_name:
            raise BadRequest("user_id: only a local user can upgrade a room", Codes.INVALID_PARAM)

    async def _default_upgrader(self, room: RoomRecord, admin: str) -> str:
        state = self.store.state
        members = [
            user
            for user in await state.get_current_members(room.room_id)
            if domain_of(user) == self.server_name
        ]
        if not members:
            raise BadRequest("No local user is joined to this room to upgrade it", Codes.BAD_STATE)
        power = await self.upgrades.room_power(room)
        return max(members, key=lambda user: (power.of(user), user == admin))


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "type": event.type,
        "state_key": event.state_key,
        "sender": event.sender,
        "content": event.content,
    }


def _final_state(events: Iterable[Event]) -> dict[tuple[str, str], Event]:
    """The state the events leave (the last event of each type and state key wins), in the
    order each key first appears."""
    state: dict[tuple[str, str], Event] = {}
    for event in events:
        if event.state_key is not None:
            state[(event.type, event.state_key)] = event
    return state


def _skipped(drafts: Sequence[EventDraft], built: Sequence[Event]) -> list[dict[str, Any]]:
    """The drafts the builder left out (refused by the auth rules): the built events are the
    drafts in order, minus those."""
    skipped, index = [], 0
    for draft in drafts:
        event = built[index] if index < len(built) else None
        if event is not None and (event.type, event.state_key, event.sender) == (
            draft.type,
            draft.state_key,
            draft.sender,
        ):
            index += 1
            continue
        skipped.append({"type": draft.type, "state_key": draft.state_key, "sender": draft.sender})
    return skipped


def _content(event: Event | None) -> dict[str, Any] | None:
    return None if event is None else copy.deepcopy(event.content)


def describe_upgrade(
    snapshot: OldRoomSnapshot, plan: UpgradePlan, built: BuiltUpgrade, server_name: str
) -> dict[str, Any]:
    """The JSON answer: the new room's events and the state they leave, the members it gets,
    power levels before and after, the aliases moved and the old room's events."""
    create, *new_events = built.new_events
    create_content = copy.deepcopy(create.content)
    create_content.get("predecessor", {}).pop("event_id", None)  # the tombstone's: not yet known
    tombstone, *old_events = built.old_events
    tombstone_content = {k: v for k, v in tombstone.content.items() if k != "replacement_room"}
    new_state = _final_state(new_events)
    old_after = _final_state(old_events)
    memberships = {key[1]: e.membership for key, e in new_state.items() if key[0] == MEMBER}

    def members(membership: str, *, local: bool) -> list[str]:
        return sorted(
            user
            for user, found in memberships.items()
            if found == membership and (domain_of(user) == server_name) == local
        )

    return {
        "room_id": snapshot.room_id,
        "room_version": snapshot.room_version.identifier,
        "new_version": plan.new_version.identifier,
        "upgrader": plan.upgrader,
        "create_content": create_content,
        "events": [_event_json(e) for e in new_events],
        "copied_state": [
            {"type": t, "state_key": sk, "content": e.content}
            for (t, sk), e in new_state.items()
            if t not in (MEMBER, POWER_LEVELS)
        ],
        "power_levels": {
            "before": _content(snapshot.state.get(POWER_LEVELS_KEY)),
            "new_room": _content(new_state.get(POWER_LEVELS_KEY)),
            # None: the old room's power levels stay as they are.
            "old_room_after": _content(old_after.get(POWER_LEVELS_KEY)),
        },
        "members": {
            "joined": members("join", local=True),
            "invited_local": members("invite", local=True),
            "invited_remote": members("invite", local=False),
            "banned": sorted(u for u, found in memberships.items() if found == "ban"),
        },
        "aliases_moved": list(snapshot.local_aliases),
        "canonical_alias": {
            "new_room": _content(new_state.get(CANONICAL_ALIAS_KEY)),
            "old_room_after": _content(old_after.get(CANONICAL_ALIAS_KEY)),
        },
        "directory": {"publish_new_room": plan.publish},
        "member_data_copied_for": list(plan.local_members),
        "old_room": {
            "tombstone": tombstone_content,
            "events": [_event_json(e) for e in old_events],
        },
        "skipped": _skipped([p.draft for p in plan.new_room], new_events)
        + _skipped(plan.old_room, old_events),
    }
