"""Joins and leaves through this server as the room's resident server (spec: server-server API
"Joining Rooms", "Leaving Rooms"): ``make_join`` / ``make_leave`` build a template on our current
state, ``send_join`` / ``send_leave`` accept the joiner's signed event, persist it and queue it
for the room's other servers.

Accepting runs in ONE transaction under the room lock: the auth checks against the event's own
auth events and the state before it, the event, and its outbox entries. The state before the
event is our current state when the event's prev events are our forward extremities (the usual
case: the template was built on them a moment ago); anything else (the room moved on between
make_join and send_join) goes through the received-events pipeline, which resolves forks.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from homeserver.auth.rules import AuthError, check_auth_rules, check_event_auth
from homeserver.auth.selection import auth_types_for_event
from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError, NotFound
from homeserver.events.builder import Signer
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.events.signing import sign_event
from homeserver.events.state_keys import CREATE_KEY, StateKey
from homeserver.events.template import template_from_event
from homeserver.events.validation import EventValidationError
from homeserver.federation.acl import ACL_EVENT_TYPE, server_allowed_by_acl
from homeserver.federation.pdu_checks import PduRejected
from homeserver.room_versions import RoomVersion, get_room_version
from homeserver.rooms.event_builder import build_event
from homeserver.rooms.prejoin_state import PREJOIN_STATE_TYPES
from homeserver.rooms.restricted import AUTHORISER_KEY, RestrictedJoins
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.rooms import RoomRecord
from homeserver.streams.fanout import enqueue_event_txn
from homeserver.streams.notifier import Notifier
from homeserver.types import domain_of, event_id_error, room_id_error, user_id_error

if TYPE_CHECKING:
    from homeserver.federation.received import ReceivedEvents

logger = logging.getLogger(__name__)

#: make_join without ``ver``: the joiner only knows version 1 (spec).
DEFAULT_JOINER_VERSIONS = ("1",)


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, Codes.INVALID_PARAM)


def check_membership_pdu(pdu: Any, *, origin: str, membership: str) -> None:
    """The spec's checks on a send_join / send_leave body before its signatures are: a member
    event of ``membership`` whose sender is on ``origin`` and is its own state key."""
    if not isinstance(pdu, dict):
        raise _invalid("The event must be a JSON object")
    content = pdu.get("content")
    sender = pdu.get("sender")
    if pdu.get("type") != "m.room.member":
        raise _invalid("Event is not a membership event")
    if not isinstance(content, dict) or content.get("membership") != membership:
        raise _invalid(f"Not a {membership} event")
    if not isinstance(sender, str) or user_id_error(sender, historical=True):
        raise _invalid("Invalid sender")
    if domain_of(sender) != origin:
        raise Forbidden("The sender is not on the requesting server")
    if pdu.get("state_key") != sender:
        raise _invalid("state_key must be the sender")


class ResidentMembership:
    def __init__(
        self,
        *,
        store: Store,
        signer: Signer,
        received: ReceivedEvents,
        notifier: Notifier,
        wake_sender: Callable[[Iterable[str]], None],
        clock: WallClock,
    ) -> None:
        self.store = store
        self.signer = signer
        self.received = received
        self.notifier = notifier
        self.wake_sender = wake_sender
        self.clock = clock
        self.restricted = RestrictedJoins(store, signer.server_name)

    @property
    def server_name(self) -> str:
        return self.signer.server_name

    # --- make_join / make_leave --------------------------------------------------------------
    async def make_membership(
        self,
        origin: str,
        room_id: str,
        user_id: str,
        membership: str,
        supported_versions: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """``{room_version, event}``: a template of ``user_id``'s ``membership`` event built on
        our current state. ``supported_versions`` (make_join's / make_knock's ``ver``) None for
        make_leave."""
        if room_id_error(room_id):
            raise _invalid("Invalid room ID")
        if user_id_error(user_id, historical=True):
            raise _invalid("Invalid user ID")
        if domain_of(user_id) != origin:
            raise Forbidden("User not from origin")
        room = await self._active_room(room_id)
        if supported_versions is not None and room.room_version not in supported_versions:
            raise BadRequest(
                "Your homeserver does not support the features required to interact with this room",
                Codes.INCOMPATIBLE_ROOM_VERSION,
                room_version=room.room_version,
            )
        await self._check_acl(room_id, origin)
        version = get_room_version(room.room_version)
        if membership == "knock" and not version.knock_join_rule:
            raise Forbidden("This room version does not support knocking")
        content: dict[str, Any] = {"membership": membership}
        if membership == "join":
            authoriser = await self.restricted.authoriser_for(room_id, version, user_id)
            if authoriser is not None:
                content[AUTHORISER_KEY] = authoriser
        draft = EventDraft("m.room.member", user_id, content, state_key=user_id)
        state, prev = await self._current_auth_state(room_id, version, draft)
        try:
            event = build_event(
                version,
                self.signer,
                draft,
                room_id=room_id,
                state=state,
                prev_events=prev,
                origin_server_ts=self.clock(),
            )
        except AuthError as e:
            raise Forbidden(f"You are not allowed to {membership} this room: {e.reason}") from None
        except EventValidationError as e:
            raise _invalid(f"Cannot build the event: {e.reason}") from None
        return {"room_version": room.room_version, "event": template_from_event(event)}

    # --- send_join / send_leave --------------------------------------------------------------
    async def send_join(self, origin: str, room_id: str, event_id: str, pdu: Any) -> dict[str, Any]:
        """Accept a signed join; the answer carries the room's state before it."""
        event = await self._accept(origin, room_id, event_id, pdu, "join")
        before = await self.store.state.get_state_ids_at_event(event.event_id, before=True)
        if before is None:  # cannot happen for an accepted, non-outlier event
            raise MatrixError(500, Codes.UNKNOWN, "The join has no state")
        state = await self.store.events.get_events(before.values())
        chain_ids = await self.store.events.get_auth_chain_ids(
            room_id, [*before.values(), event.event_id]
        )
        chain = await self.store.events.get_events(chain_ids)
        joined = await self.store.state.get_current_members(room_id, "join")
        servers = sorted({domain_of(u) for u in joined} | {self.server_name})
        return {
            "state": [e.federation_json() for e in state.values()],
            "auth_chain": [e.federation_json() for e in chain.values()],
            "event": event.federation_json(),
            "members_omitted": False,
            "servers_in_room": servers,
        }

    async def send_leave(self, origin: str, room_id: str, event_id: str, pdu: Any) -> None:
        await self._accept(origin, room_id, event_id, pdu, "leave")

    async def send_knock(
        self, origin: str, room_id: str, event_id: str, pdu: Any
    ) -> dict[str, Any]:
        """Accept a signed knock; the answer carries the room's stripped pre-join state, so
        the knocker can show the room (under both names Synapse sends)."""
        event = await self._accept(origin, room_id, event_id, pdu, "knock")
        before = await self.store.state.get_state_ids_at_event(event.event_id, before=True)
        before = before or {}
        ids = [before[(t, "")] for t in PREJOIN_STATE_TYPES if (t, "") in before]
        found = await self.store.events.get_events(ids)
        stripped = [
            {"type": e.type, "state_key": e.state_key, "content": e.content, "sender": e.sender}
            for e in (found[i] for i in ids if i in found)
        ]
        return {"knock_room_state": stripped, "knock_state_events": stripped}

    async def _accept(
        self, origin: str, room_id: str, event_id: str, pdu: Any, membership: str
    ) -> Event:
        if room_id_error(room_id) or event_id_error(event_id):
            raise _invalid("Invalid room or event ID")
        check_membership_pdu(pdu, origin=origin, membership=membership)
        room = await self._active_room(room_id)
        await self._check_acl(room_id, origin)
        version = get_room_version(room.room_version)
        # Only a join is vouched for (the signature rule and the keyring ask for no other).
        we_authorise = membership == "join" and self._names_our_authoriser(version, pdu)
        try:
            event = await self.received.check_pdu(
                version, pdu, origin=origin, check_authorising_server=not we_authorise
            )
        except PduRejected as e:
            raise _invalid(f"Invalid event: {e}") from None
        if event.internal.redacted:
            raise _invalid("The event's content hash does not match")
        if event.event_id != event_id:
            raise _invalid("The event ID does not match the path")
        if event.room_id != room_id:
            raise _invalid("The event is not for this room")
        if we_authorise:
            event = await self._authorise(room_id, version, event)
        stored = await self.store.events.get_event(event.event_id)
        if stored is not None and not stored.internal.outlier:
            if stored.rejected or stored.internal.soft_failed:
                raise Forbidden("The event was not accepted")
            return stored  # a retried send_join: answer it again
        destinations = await self.store.db.run_in_transaction(
            f"federation_send_{membership}", self._persist_txn, room, version, event, origin
        )
        if destinations is None:
            await self._accept_through_pipeline(origin, room, event)
        return event

    async def _persist_txn(
        self, txn: Transaction, room: RoomRecord, version: RoomVersion, event: Event, origin: str
    ) -> list[str] | None:
        """Persist ``event`` on our current state and queue it; None (nothing written) when its
        prev events are not our forward extremities."""
        room_id = room.room_id
        await self.store.persister.lock_rooms_txn(txn, [room_id])
        extremities = await self.store.events.get_forward_extremities(room_id, txn=txn)
        if set(event.prev_event_ids()) != set(extremities.event_ids):
            return None
        group = await self.store.state.get_current_state_group(room_id, txn=txn)
        if group is None:
            return None
        state_ids = await self.store.state.get_state_group_ids(group, txn=txn)
        await self._check_auth(txn, version, event, state_ids)
        await self.store.persist_events_txn(txn, [(event, group)])
        destinations = await enqueue_event_txn(
            txn, self.store, event, our_server=self.server_name, exclude=[origin]
        )
        txn.call_after_commit(lambda: self._after_commit(room_id, destinations))
        return destinations

    async def _accept_through_pipeline(self, origin: str, room: RoomRecord, event: Event) -> None:
        """The room moved on since the template: the received-events pipeline computes the
        state before the event (resolving forks); then it is queued for the other servers."""
        try:
            await self.received.on_receive_pdu(origin, event)
        except PduRejected as e:
            raise Forbidden(f"The event was rejected: {e}") from None
        member = await self.store.state.get_current_state_event_id(
            room.room_id, "m.room.member", event.state_key or ""
        )
        if member != event.event_id:
            raise Forbidden("The event is not allowed by the room's current state")

        async def queue(txn: Transaction) -> list[str]:
            return await enqueue_event_txn(
                txn, self.store, event, our_server=self.server_name, exclude=[origin]
            )

        destinations = await self.store.db.run_in_transaction("federation_queue_membership", queue)
        self._after_commit(room.room_id, destinations)

    def _after_commit(self, room_id: str, destinations: list[str]) -> None:
        self.notifier.notify([room_id])
        if destinations:
            self.wake_sender(destinations)

    # --- restricted joins ---------------------------------------------------------------------
    def _names_our_authoriser(self, version: RoomVersion, pdu: dict[str, Any]) -> bool:
        """Whether ``pdu`` is a join whose ``join_authorised_via_users_server`` is one of our
        users (it then needs our signature, which only we can add)."""
        content = pdu.get("content")
        via = content.get(AUTHORISER_KEY) if isinstance(content, dict) else None
        if not version.restricted_join_rule or via is None:
            return False
        if not isinstance(via, str) or user_id_error(via, historical=True):
            raise _invalid(f"Invalid {AUTHORISER_KEY}")
        if domain_of(via) != self.server_name:
            # As Synapse: the joining server asks the authoriser itself, never us for another.
            raise _invalid(f"{AUTHORISER_KEY} must be a user of this server")
        return True

    async def _authorise(self, room_id: str, version: RoomVersion, event: Event) -> Event:
        """Re-check the join against our state (the make_join answer proves nothing), then
        vouch for it with our signature. The auth rules check the named user's power."""
        await self.restricted.authoriser_for(room_id, version, event.sender)
        pdu = copy.deepcopy(event.pdu)
        sign_event(version, pdu, self.server_name, self.signer.signing_key)
        return Event(pdu, version)

    # --- helpers -------------------------------------------------------------------------------
    async def _active_room(self, room_id: str) -> RoomRecord:
        """The room, if this server is in it (one of our users joined)."""
        room = await self.store.rooms.get_room(room_id)
        if room is None:
            raise NotFound("Unknown room")
        joined = await self.store.state.get_current_members(room_id, "join")
        if not any(domain_of(u) == self.server_name for u in joined):
            raise NotFound("Not an active room on this server")
        return room

    async def _check_acl(self, room_id: str, origin: str) -> None:
        acl = await self.store.state.get_current_state_event(room_id, ACL_EVENT_TYPE)
        if not server_allowed_by_acl(None if acl is None else acl.content, origin):
            raise Forbidden("Server is banned from room")

    async def _current_auth_state(
        self, room_id: str, version: RoomVersion, draft: EventDraft
    ) -> tuple[dict[StateKey, Event], list[Event]]:
        state_ids = await self.store.state.get_current_state_ids(room_id)
        wanted = {
            CREATE_KEY,
            *auth_types_for_event(
                version, draft.type, draft.sender, draft.state_key, draft.content
            ),
        }
        found = await self.store.events.get_events(
            state_ids[key] for key in wanted if key in state_ids
        )
        extremities = await self.store.events.get_forward_extremities(room_id)
        prev = await self.store.events.get_events(extremities.event_ids)
        return {e.state_tuple: e for e in found.values()}, list(prev.values())

    async def _check_auth(
        self,
        txn: Transaction,
        version: RoomVersion,
        event: Event,
        state_ids: dict[StateKey, str],
    ) -> None:
        """The event against its own auth events, then against the state before it."""
        auth_ids = list(dict.fromkeys(event.auth_event_ids()))
        wanted = {
            CREATE_KEY,
            *auth_types_for_event(
                version, event.type, event.sender, event.state_key, event.content
            ),
        }
        state_wanted = [state_ids[key] for key in wanted if key in state_ids]
        found = await self.store.events.get_events([*auth_ids, *state_wanted], txn=txn)
        missing = [a for a in auth_ids if a not in found]
        if missing:
            raise Forbidden("The event's auth events are unknown to this server")
        create_id = state_ids.get(CREATE_KEY)
        create = found.get(create_id) if create_id is not None else None
        try:
            check_event_auth(version, event, [found[a] for a in auth_ids], create)
            check_auth_rules(version, event, {found[i].state_tuple: found[i] for i in state_wanted})
        except AuthError as e:
            raise Forbidden(f"The event is not allowed: {e.reason}") from None
