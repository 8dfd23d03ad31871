"""Invites of our users received from other servers: ``PUT /_matrix/federation/v2/invite``
(and v1 for old rooms). Spec: server-server API "Inviting to a room"; §5 of
federation-minimum.md.

Before we sign, the invite must be a signed ``m.room.member`` invite sent by a user of the
requesting server to one of our existing users, in a room version we support, and the
``invite_room_state`` must hold the room's create event with every full PDU in it well formed,
signed and of this room. We then add our signature and keep the invite:

* for a room we are not in, as an out-of-band invite (the event as an outlier carrying
  ``unsigned.invite_room_state``, plus the row /sync reads);
* for a room one of our users is joined to, through the received-events pipeline like any
  PDU of the room (it also arrives in ``/send``; storing it as an outlier first would keep it
  out of the room's state).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden
from homeserver.events.builder import Signer
from homeserver.events.event import Event
from homeserver.events.signing import sign_event
from homeserver.federation.acl import ACL_EVENT_TYPE, server_allowed_by_acl
from homeserver.federation.out_of_band import record_out_of_band_txn
from homeserver.federation.pdu_checks import PduRejected
from homeserver.ratelimit import InviteLimiter
from homeserver.room_versions import RoomVersion, UnsupportedRoomVersion, get_room_version
from homeserver.storage import Store
from homeserver.streams.notifier import Notifier
from homeserver.types import domain_of, user_id_error

if TYPE_CHECKING:
    from homeserver.federation.received import ReceivedEvents

logger = logging.getLogger(__name__)

#: Called after an invite for one of our users was kept (invitee, room_id).
InvitedHook = Callable[[str, str], Awaitable[None]]


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, Codes.INVALID_PARAM)


def _is_full_pdu(entry: dict[str, Any]) -> bool:
    """A PDU rather than a client "stripped" state event (which has no hashes or auth)."""
    return "hashes" in entry or "auth_events" in entry


class InboundInvites:
    def __init__(
        self,
        *,
        store: Store,
        signer: Signer,
        received: ReceivedEvents,
        notifier: Notifier,
        clock: WallClock,
        limiter: InviteLimiter | None = None,
        on_invited: InvitedHook | None = None,
    ) -> None:
        #: ``rc_invites``: invites our users receive (per invitee).
        self.limiter = limiter
        self.store = store
        self.signer = signer
        self.received = received
        self.notifier = notifier
        self.clock = clock
        #: after an invite for one of our users was kept (a refused upgrade follow retries).
        self.on_invited = on_invited

    @property
    def server_name(self) -> str:
        return self.signer.server_name

    async def on_invite_v1(
        self, origin: str, room_id: str, event_id: str, pdu: Any, invite_room_state: Any
    ) -> dict[str, Any]:
        """``PUT /v1/invite``: the body does not name the room version; rooms v1/v2 only ever
        use this endpoint, so it is "1" unless we know the room."""
        room = await self.store.rooms.get_room(room_id)
        version = room.room_version if room is not None else "1"
        return await self.on_invite(origin, room_id, event_id, version, pdu, invite_room_state)

    async def on_invite(
        self,
        origin: str,
        room_id: str,
        event_id: str,
        room_version_id: Any,
        pdu: Any,
        invite_room_state: Any,
    ) -> dict[str, Any]:
        """Check, sign and keep an invite; returns the event with our signature (without
        ``unsigned.invite_room_state``)."""
        try:
            version = get_room_version(room_version_id)
        except UnsupportedRoomVersion:
            raise BadRequest(
                "This server does not support this room version",
                Codes.INCOMPATIBLE_ROOM_VERSION,
                room_version=room_version_id if isinstance(room_version_id, str) else None,
            ) from None
        if not isinstance(pdu, dict):
            raise _invalid("'event' must be a JSON object")
        invitee = await self._check_shape(pdu, origin)
        try:
            event = await self.received.check_pdu(version, pdu, origin=origin)
        except PduRejected as e:
            raise _invalid(f"Invalid invite event: {e.reason}") from None
        if event.internal.redacted:
            raise _invalid("The invite's content hash does not match")
        if event.event_id != event_id or event.room_id != room_id:
            raise _invalid("The invite does not match the room and event IDs of the path")
        if self.limiter is not None:
            await self.limiter.check_received(invitee)  # only signed, well-formed invites count
        stripped = await self._check_room_state(version, room_id, invite_room_state, origin)
        await self._check_room_acl(room_id, origin)

        signed = copy.deepcopy(event.pdu)
        signed.pop("unsigned", None)
        sign_event(version, signed, self.server_name, self.signer.signing_key)
        answer = copy.deepcopy(signed)
        if await self._we_are_in(room_id):
            await self._through_pipeline(origin, Event(signed, version))
        else:
            signed["unsigned"] = {"invite_room_state": stripped}
            kept = Event(signed, version)
            await self.store.db.run_in_transaction(
                "receive_invite", record_out_of_band_txn, self.store, kept
            )
            self.notifier.notify([room_id], [invitee])
        if self.on_invited is not None:
            try:
                await self.on_invited(invitee, room_id)
            except Exception:  # the invite is kept either way; the follow can wait
                logger.exception("after the invite of %s to %s", invitee, room_id)
        return answer

    # --- checks --------------------------------------------------------------------------------
    async def _check_shape(self, pdu: dict[str, Any], origin: str) -> str:
        """The invite is a member invite from a user of ``origin`` to one of our users."""
        content = pdu.get("content")
        sender = pdu.get("sender")
        target = pdu.get("state_key")
        if pdu.get("type") != "m.room.member":
            raise _invalid("The event is not a membership event")
        if not isinstance(content, dict) or content.get("membership") != "invite":
            raise _invalid("The event is not an invite")
        if not isinstance(sender, str) or user_id_error(sender, historical=True):
            raise _invalid("Invalid sender")
        if domain_of(sender) != origin:
            raise _invalid("The sender is not on the requesting server")
        if not isinstance(target, str) or user_id_error(target, historical=True):
            raise _invalid("Invalid state_key")
        if domain_of(target) != self.server_name:
            raise _invalid("The invitee is not on this server")
        user = await self.store.users.get_user(target)
        if user is None or user.deactivated:
            raise _invalid("The invitee does not exist on this server")
        return target

    async def _check_room_state(
        self, version: RoomVersion, room_id: str, entries: Any, origin: str
    ) -> list[dict[str, Any]]:
        """The stripped form of ``invite_room_state`` once it is known to describe this room."""
        if entries is None:
            entries = []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise _invalid("invite_room_state must be a list of events")
        stripped: list[dict[str, Any]] = []
        has_create = False
        for entry in entries:
            if not _is_full_pdu(entry):
                # v1-11 senders that predate full PDUs (MSC4311) still send stripped state.
                if version.room_id_is_create_event_hash:
                    raise _invalid("invite_room_state entries must be full events")
                has_create |= entry.get("type") == "m.room.create"
                stripped.append(self._stripped(entry))
                continue
            try:
                event = await self.received.check_pdu(version, entry, origin=origin)
            except PduRejected as e:
                raise _invalid(f"invite_room_state holds an invalid event: {e.reason}") from None
            if event.type == "m.room.create" and event.state_key == "":
                has_create = True
            # A v12 create event's room ID is its own hash, so this also checks that one.
            if event.room_id != room_id:
                raise _invalid("invite_room_state holds an event of another room")
            stripped.append(self._stripped(event.pdu))
        if not has_create:
            raise _invalid("invite_room_state must contain the room's m.room.create event")
        return stripped

    @staticmethod
    def _stripped(entry: dict[str, Any]) -> dict[str, Any]:
        content = entry.get("content")
        return {
            "type": entry.get("type"),
            "state_key": entry.get("state_key"),
            "sender": entry.get("sender"),
            "content": content if isinstance(content, dict) else {},
        }

    async def _check_room_acl(self, room_id: str, origin: str) -> None:
        acl = await self.store.state.get_current_state_event(room_id, ACL_EVENT_TYPE)
        if acl is not None and not server_allowed_by_acl(acl.content, origin):
            raise Forbidden("Server is banned from room")

    async def _we_are_in(self, room_id: str) -> bool:
        joined = await self.store.state.get_current_members(room_id, "join")
        return any(domain_of(user) == self.server_name for user in joined)

    async def _through_pipeline(self, origin: str, event: Event) -> None:
        try:
            await self.received.on_receive_pdu(origin, event)
        except PduRejected as e:
            raise Forbidden(f"The invite was rejected: {e.reason}") from None
