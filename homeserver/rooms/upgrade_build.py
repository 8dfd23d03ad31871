"""Building an upgrade's events in memory (DESIGN.md §3.3 step "build"): the new room's whole
genesis and the old room's tombstone and restrictions, each hashed, signed and checked against
the auth rules on the state before it — no I/O, so the commit only writes.

The order of the first two events depends on how the target names rooms:

* room IDs chosen by the server (v1–v11 targets): the new room's ID is drawn first, the
  tombstone naming it is built, then the new create event, whose ``predecessor.event_id`` is
  the tombstone's ID (as Synapse does);
* room ID = the create event's hash (v12 targets): the create event comes first (its
  ``predecessor`` has no ``event_id``: the tombstone cannot exist before the ID it names).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from homeserver.auth.rules import AuthError
from homeserver.clock import WallClock
from homeserver.events.builder import Signer
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.events.signing import DeferredSignatures
from homeserver.events.validation import EventValidationError
from homeserver.rooms.sender import BatchBuilder
from homeserver.rooms.upgrade_plan import OldRoomSnapshot, UpgradePlan, tombstone_draft

logger = logging.getLogger(__name__)


class UpgradeBuildError(Exception):
    """A required event of the upgrade was refused (a bug or an impossible old state)."""


@dataclass(frozen=True, slots=True)
class BuiltUpgrade:
    new_room_id: str
    #: the new room's events, create first.
    new_events: list[Event]
    #: the old room's events, tombstone first.
    old_events: list[Event]
    #: the old room's forward extremities the tombstone was built on.
    old_extremity_ids: frozenset[str]


def _describe(draft: EventDraft) -> str:
    return draft.type if not draft.state_key else f"{draft.type} ({draft.state_key})"


def _add(batch: BatchBuilder, draft: EventDraft, *, required: bool) -> Event | None:
    try:
        return batch.add(draft)
    except (AuthError, EventValidationError) as e:
        reason = e.reason
        if required:
            raise UpgradeBuildError(f"{_describe(draft)} refused: {reason}") from None
        logger.warning(
            "room upgrade: skipping %s in %s: %s", _describe(draft), batch.room_id, reason
        )
        return None


def build_upgrade(
    plan: UpgradePlan,
    snapshot: OldRoomSnapshot,
    signer: Signer,
    *,
    clock: WallClock,
    new_room_id: Callable[[], str],
    extremities: Sequence[Event] | None = None,
) -> BuiltUpgrade:
    """Build every event of the upgrade. ``extremities`` overrides the snapshot's (a rebuild at
    commit after messages, not state, arrived in the old room)."""
    prev = list(snapshot.extremities if extremities is None else extremities)
    # Thousands of joins in a big room: signed together at the end, on two cores.
    deferred = DeferredSignatures(signer.server_name, signer.signing_key)
    old = BatchBuilder(
        snapshot.room_version,
        signer,
        snapshot.room_id,
        state=dict(snapshot.state),
        extremities=prev,
        clock=clock,
        deferred=deferred,
    )
    target = plan.new_version
    create_content = {
        **plan.create_content,
        "predecessor": dict(plan.create_content["predecessor"]),
    }
    if target.room_id_is_create_event_hash:
        new = BatchBuilder(target, signer, None, clock=clock, deferred=deferred)
        _add(new, EventDraft("m.room.create", plan.upgrader, create_content, ""), required=True)
        assert new.room_id is not None
        room_id = new.room_id
        _add(old, tombstone_draft(plan.upgrader, room_id), required=True)
    else:
        room_id = new_room_id()
        tombstone = _add(old, tombstone_draft(plan.upgrader, room_id), required=True)
        assert tombstone is not None
        create_content["predecessor"]["event_id"] = tombstone.event_id
        new = BatchBuilder(target, signer, room_id, clock=clock, deferred=deferred)
        _add(new, EventDraft("m.room.create", plan.upgrader, create_content, ""), required=True)
    for planned in plan.new_room:
        _add(new, planned.draft, required=planned.required)
    for draft in plan.old_room:
        _add(old, draft, required=False)
    deferred.sign()
    return BuiltUpgrade(
        new_room_id=room_id,
        new_events=new.events,
        old_events=old.events,
        old_extremity_ids=frozenset(e.event_id for e in prev),
    )
