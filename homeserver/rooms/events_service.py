"""Sending into a room from the client API: messages (idempotent per transaction ID), state,
redactions; and reading state.

* ``m.room.member`` state goes to the membership service (homeserver/rooms/membership.py), the
  one gate for membership changes, never straight to the sender.
* A transaction ID is looked up and recorded under the room lock, in the same transaction as the
  event, so a retried request gets the event its first attempt made — even when both run at once.
* A hand-sent ``m.room.tombstone`` (state key ``""``) moves the room ``active → tombstoned`` in
  the transaction that stores it (DESIGN.md §3.2); during an upgrade it is refused, since the
  upgrade sends its own.
* A redaction applies when its sender may redact (the ``redact`` level, or their own event, as
  Synapse allows); the target is then flagged redacted and served pruned.
"""

from __future__ import annotations

from typing import Any

from homeserver.auth.power_levels import named_power_level, user_power_level
from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden, NotFound, UpgradeInProgress
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.events.state_keys import CREATE_KEY, POWER_LEVELS_KEY
from homeserver.ratelimit import RateLimiters
from homeserver.rooms.client_errors import check_content, client_event_errors
from homeserver.rooms.lifecycle import Actor, RoomStatus, transition
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.relations import RelationsReader, check_relation
from homeserver.rooms.room_reads import RoomReader
from homeserver.rooms.sender import EventSender
from homeserver.rooms.shadow_ban import ShadowBanCheck, fake_event_id, nobody, suspended_error
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.rooms import RoomRecord
from homeserver.types import event_id_error, room_id_error
from homeserver.visibility.client import check_read_access

MAX_TXN_ID_LENGTH = 255


def check_room_id(room_id: str) -> None:
    reason = room_id_error(room_id)
    if reason:
        raise BadRequest(reason, Codes.INVALID_PARAM)


def check_event_id(event_id: str) -> None:
    reason = event_id_error(event_id)
    if reason:
        raise BadRequest(reason, Codes.INVALID_PARAM)


def _check_txn_id(txn_id: str) -> None:
    if not txn_id or len(txn_id) > MAX_TXN_ID_LENGTH:
        raise BadRequest("Invalid transaction ID", Codes.INVALID_PARAM)


def _redaction_draft(user_id: str, content: dict[str, Any]) -> EventDraft:
    redacts = content.get("redacts")
    if not isinstance(redacts, str):
        raise BadRequest("m.room.redaction needs 'redacts' in its content", Codes.BAD_JSON)
    check_event_id(redacts)
    rest = {k: v for k, v in content.items() if k != "redacts"}
    return EventDraft("m.room.redaction", user_id, rest, redacts=redacts)


class RoomEventsService:
    def __init__(
        self,
        store: Store,
        sender: EventSender,
        ratelimiters: RateLimiters,
        clock: WallClock,
        *,
        membership: MembershipService,
        shadow_banned: ShadowBanCheck = nobody,
        suspended: ShadowBanCheck = nobody,
    ) -> None:
        self.store = store
        #: a suspended sender may only redact their own events (and leave, in membership).
        self._suspended = suspended
        #: a shadow-banned sender's events are answered with a made-up ID, never stored.
        self._shadow_banned = shadow_banned
        #: every ``m.room.member`` change goes through its checks (one membership gate).
        self.membership = membership
        self.sender = sender
        self.ratelimiters = ratelimiters
        self.clock = clock
        #: the read side (/messages, /context, members …).
        self.reader = RoomReader(store, clock)
        #: /relations and /threads.
        self.relations = RelationsReader(store, clock)

    # --- sending ---------------------------------------------------------------------------
    async def send_message(
        self,
        user_id: str,
        scope: str,
        room_id: str,
        event_type: str,
        txn_id: str,
        content: dict[str, Any],
    ) -> str:
        """``PUT /rooms/{roomId}/send/{eventType}/{txnId}``; returns the event ID."""
        check_room_id(room_id)
        _check_txn_id(txn_id)
        draft = EventDraft(event_type, user_id, content)
        if event_type == "m.room.redaction":
            # A redaction sent as a plain event (v11 clients put ``redacts`` in the content):
            # it goes through the redaction checks like PUT /redact, as in Synapse.
            draft = _redaction_draft(user_id, content)
        return await self._send_idempotent(user_id, scope, room_id, "send", txn_id, draft)

    async def redact(
        self,
        user_id: str,
        scope: str,
        room_id: str,
        target_id: str,
        txn_id: str,
        reason: str | None,
        *,
        ratelimit: bool = True,
    ) -> str:
        """``PUT /rooms/{roomId}/redact/{eventId}/{txnId}``; returns the redaction's ID.
        ``ratelimit=False``: an admin's redaction of a user's events (as Synapse's)."""
        check_room_id(room_id)
        check_event_id(target_id)
        _check_txn_id(txn_id)
        content: dict[str, Any] = {} if reason is None else {"reason": reason}
        draft = EventDraft("m.room.redaction", user_id, content, redacts=target_id)
        return await self._send_idempotent(
            user_id, scope, room_id, "redact", txn_id, draft, ratelimit=ratelimit
        )

    async def send_state(
        self, user_id: str, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        """``PUT /rooms/{roomId}/state/{eventType}/{stateKey}``; returns the event ID."""
        check_room_id(room_id)
        check_content(content)
        if event_type == "m.room.member":
            return await self.membership.set_membership(user_id, room_id, state_key, content)
        if self._suspended(user_id):
            raise suspended_error("Sending messages")
        room = await self._room_for_send(room_id)
        current = await self.store.state.get_current_state_event(room_id, event_type, state_key)
        if current is not None and current.sender == user_id and current.content == content:
            return current.event_id  # the same state again: no new event (as Synapse)
        await self.ratelimiters.message.check(user_id)
        if self._shadow_banned(user_id):
            return fake_event_id()
        draft = EventDraft(event_type, user_id, content, state_key=state_key)
        with client_event_errors():
            event = await self.store.db.run_in_transaction(
                "send_state", self._send_state_txn, room, draft
            )
        return event.event_id

    async def _send_idempotent(
        self,
        user_id: str,
        scope: str,
        room_id: str,
        endpoint: str,
        txn_id: str,
        draft: EventDraft,
        *,
        ratelimit: bool = True,
    ) -> str:
        known = await self.store.room_use.get_txn_event_id(
            user_id, scope, room_id, endpoint, txn_id
        )
        if known is not None:
            return known
        check_content(draft.content)
        if self._suspended(user_id):
            await self._check_suspended_redaction(user_id, draft)
        room = await self._room_for_send(room_id)
        await check_relation(self.store, room_id, user_id, draft.content)
        if ratelimit:
            await self.ratelimiters.message.check(user_id)
        if self._shadow_banned(user_id):
            return fake_event_id()
        with client_event_errors():
            return await self.store.db.run_in_transaction(
                f"send_{endpoint}", self._send_idempotent_txn, room, scope, endpoint, txn_id, draft
            )

    async def _check_suspended_redaction(self, user_id: str, draft: EventDraft) -> None:
        """A suspended user may redact their own events, nothing else (as Synapse)."""
        if draft.redacts is None:
            raise suspended_error("Sending messages")
        target = await self.store.events.get_event(draft.redacts)
        if target is not None and target.sender != user_id:
            raise Forbidden(
                "You can only redact your own events while account is suspended.",
                Codes.USER_SUSPENDED,
            )

    async def _send_idempotent_txn(
        self,
        txn: Transaction,
        room: RoomRecord,
        scope: str,
        endpoint: str,
        txn_id: str,
        draft: EventDraft,
    ) -> str:
        await self.store.persister.lock_rooms_txn(txn, [room.room_id])
        # Under the lock: a concurrent retry of this request has either committed or waits.
        known = await self.store.room_use.get_txn_event_id(
            draft.sender, scope, room.room_id, endpoint, txn_id, txn=txn
        )
        if known is not None:
            return known
        target: Event | None = None
        if draft.redacts is not None:
            target = await self._check_redaction_txn(txn, room, draft)
        (event,) = await self.sender.send_txn(txn, room, [draft])
        await self.store.room_use.add_txn_id_txn(
            txn, draft.sender, scope, room.room_id, endpoint, txn_id, event.event_id, self.clock()
        )
        if draft.redacts is not None:
            await self._apply_redaction_txn(txn, room, event, target)
        return event.event_id

    async def _room_for_send(self, room_id: str) -> RoomRecord:
        room = await self.store.rooms.get_room(room_id)
        if room is None:
            raise Forbidden("Unknown room")  # as Synapse: a send to an unknown room is a 403
        return room

    # --- state and tombstones --------------------------------------------------------------
    async def _send_state_txn(self, txn: Transaction, room: RoomRecord, draft: EventDraft) -> Event:
        is_tombstone = draft.type == "m.room.tombstone" and draft.state_key == ""
        if not is_tombstone:
            (event,) = await self.sender.send_txn(txn, room, [draft])
            return event
        await self.store.persister.lock_rooms_txn(txn, [room.room_id])
        status = RoomStatus(await self.store.room_use.get_room_status_txn(txn, room.room_id))
        if status is RoomStatus.UPGRADING:
            raise UpgradeInProgress()
        (event,) = await self.sender.send_txn(txn, room, [draft])
        if status is RoomStatus.ACTIVE:
            transition(status, RoomStatus.TOMBSTONED, Actor.SYSTEM)  # validates the move
            replacement = draft.content.get("replacement_room")
            valid = isinstance(replacement, str) and room_id_error(replacement) is None
            moved = await self.store.rooms.transition_txn(
                txn,
                room.room_id,
                RoomStatus.ACTIVE,
                RoomStatus.TOMBSTONED,
                actor=Actor.SYSTEM,
                reason=f"tombstone sent by {draft.sender}",
                ts=self.clock(),
                replacement_room_id=replacement if valid else None,
            )
            if not moved:  # cannot happen under the room lock; never leave a half-done state
                raise RuntimeError(f"lifecycle of {room.room_id} changed under its lock")
        return event

    async def get_state(self, user_id: str, room_id: str) -> list[dict[str, Any]]:
        """``GET /rooms/{roomId}/state``: current state, or as of leaving for former members."""
        check_room_id(room_id)
        access = await check_read_access(self.store, room_id, user_id)
        state_ids = await self.reader.state_ids_for(access, room_id)
        events = await self.store.events.get_events(state_ids.values())
        return await self.reader.serialize([events[i] for i in state_ids.values() if i in events])

    async def get_state_event(
        self, user_id: str, room_id: str, event_type: str, state_key: str
    ) -> dict[str, Any]:
        """The content of one state event; 404 if absent."""
        check_room_id(room_id)
        access = await check_read_access(self.store, room_id, user_id)
        state_ids = await self.reader.state_ids_for(access, room_id)
        event_id = state_ids.get((event_type, state_key))
        event = None if event_id is None else await self.store.events.get_event(event_id)
        if event is None:
            raise NotFound("Event not found.")
        (body,) = await self.reader.serialize([event])
        return body["content"]

    # --- redactions ------------------------------------------------------------------------
    async def _check_redaction_txn(
        self, txn: Transaction, room: RoomRecord, draft: EventDraft
    ) -> Event | None:
        """Refuse a redaction its sender may not make; returns the target if it is known
        and in this room (an unknown target is allowed and has no effect, as Synapse)."""
        assert draft.redacts is not None
        found = await self.store.events.get_events([draft.redacts], txn=txn)
        target = found.get(draft.redacts)
        if target is None or target.room_id != room.room_id:
            return None
        if target.type == "m.room.create" and target.state_key == "":
            raise Forbidden("Redacting create events is not permitted")
        if target.sender == draft.sender:
            return target
        ids = await self.store.room_use.get_current_state_ids_txn(
            txn, room.room_id, [CREATE_KEY, POWER_LEVELS_KEY]
        )
        state = await self.store.events.get_events(ids.values(), txn=txn)
        create = state.get(ids.get(CREATE_KEY, ""))
        power_levels = state.get(ids.get(POWER_LEVELS_KEY, ""))
        version = target.room_version
        power = user_power_level(version, draft.sender, create, power_levels)
        if power < named_power_level(version, "redact", power_levels):
            raise Forbidden("You don't have permission to redact events")
        return target

    async def _apply_redaction_txn(
        self, txn: Transaction, room: RoomRecord, redaction: Event, target: Event | None
    ) -> None:
        assert redaction.redacts is not None
        await self.store.room_use.add_redaction_txn(
            txn, redaction.event_id, redaction.redacts, room.room_id
        )
        if target is None:
            return
        await self.store.room_use.mark_redacted_txn(txn, target.event_id)
        target_id = target.event_id
        txn.call_after_commit(lambda: self.store.events.invalidate(target_id))
