"""Joins and leaves of our users through another server (spec: server-server API "Joining
Rooms", "Leaving Rooms"), for rooms this server is not in.

Join: ``make_join`` to each candidate server in turn (offering every room version we support),
check the template, sign our own event from it, ``v2/send_join`` it, check every event of the
answer (format, signatures, hashes — through the received-events checks) and that the join is
allowed by the returned state, then persist the room as joined. Any failure with one server
moves on to the next; a 400 ``M_INCOMPATIBLE_ROOM_VERSION`` ends the attempt (no server of the
room will do better). A restricted room's resident answering 400 ``M_UNABLE_TO_AUTHORISE_JOIN``
/ ``M_UNABLE_TO_GRANT_JOIN`` cannot vouch for our user: the next server is asked (as Synapse).
The template then names the resident's authorising user (``join_authorised_via_users_server``,
kept in our event), and the send_join answer's ``event`` is the join with the resident's
signature added, which is the copy we keep (checked like any received event).

Rejecting an invite to a room we are not in: ``make_leave`` / ``v2/send_leave`` through the
inviter's server; if no server can be reached the invite is rejected locally only (as Synapse
does), with a leave event built on the invite, so the user is not stuck with it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from homeserver.auth.rules import AuthError, check_auth_rules
from homeserver.clock import WallClock
from homeserver.crypto.base64 import encode_base64
from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError, NotFound
from homeserver.events.builder import Signer
from homeserver.events.event import Event
from homeserver.events.hashes import add_content_hash, compute_reference_hash
from homeserver.events.ids import new_opaque_event_id
from homeserver.events.signing import sign_event
from homeserver.events.state_keys import CREATE_KEY
from homeserver.events.template import BadTemplate, check_template, event_from_template
from homeserver.federation.client import (
    FederationClient,
    FederationError,
    FederationHttpError,
    fed_path,
)
from homeserver.federation.out_of_band import record_out_of_band_txn
from homeserver.federation.pdu_checks import PduRejected, parse_pdu
from homeserver.room_versions import (
    KNOWN_ROOM_VERSIONS,
    RoomVersion,
    UnsupportedRoomVersion,
    get_room_version,
)
from homeserver.rooms.remote_joins import candidate_servers
from homeserver.rooms.restricted import UNABLE_TO_AUTHORISE_JOIN, UNABLE_TO_GRANT_JOIN
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.streams.notifier import Notifier
from homeserver.types import domain_of

if TYPE_CHECKING:
    from homeserver.federation.received import ReceivedEvents

logger = logging.getLogger(__name__)

#: Called after our user joined a room through another server (user_id, room_id).
JoinedHook = Callable[[str, str], Awaitable[None]]


#: make_join refusals of a restricted join that mean "ask another resident" (spec).
_TRY_ANOTHER_SERVER = frozenset({UNABLE_TO_AUTHORISE_JOIN, UNABLE_TO_GRANT_JOIN})
#: the most stripped state events kept from a send_knock answer (Synapse sends about seven).
MAX_KNOCK_ROOM_STATE = 50


def knock_room_state(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The stripped state of a ``send_knock`` answer (``knock_room_state``, or the older
    ``knock_state_events``): entries that are not state are dropped, each cut down to its
    stripped keys (full PDUs too), at most :data:`MAX_KNOCK_ROOM_STATE` of them."""
    entries = answer.get("knock_room_state", answer.get("knock_state_events"))
    if not isinstance(entries, list):
        return []
    kept: list[dict[str, Any]] = []
    for entry in entries:
        if len(kept) == MAX_KNOCK_ROOM_STATE:
            break
        if not isinstance(entry, dict):
            continue
        event_type, state_key = entry.get("type"), entry.get("state_key")
        sender, content = entry.get("sender"), entry.get("content")
        if all(isinstance(v, str) for v in (event_type, state_key, sender)) and isinstance(
            content, dict
        ):
            kept.append(
                {"type": event_type, "state_key": state_key, "sender": sender, "content": content}
            )
    return kept


class _ServerFailed(Exception):
    """This server could not get us in; try the next one."""


class RemoteMembership:
    def __init__(
        self,
        *,
        store: Store,
        signer: Signer,
        client: FederationClient,
        received: ReceivedEvents,
        notifier: Notifier,
        clock: WallClock,
        on_joined: JoinedHook | None = None,
    ) -> None:
        self.store = store
        self.signer = signer
        self.client = client
        self.received = received
        self.notifier = notifier
        self.clock = clock
        #: what follows a join (tags and push rules of an upgraded room).
        self.on_joined = on_joined

    @property
    def server_name(self) -> str:
        return self.signer.server_name

    # --- join and knock ----------------------------------------------------------------------
    async def join(
        self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]
    ) -> None:
        """Join ``room_id`` through the first of ``servers`` that lets us in."""
        await self._through(servers, "join", user_id, room_id, content, self._join_via)
        self.notifier.notify([room_id], [user_id])
        if self.on_joined is not None:
            await self.on_joined(user_id, room_id)

    async def knock(
        self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]
    ) -> str:
        """Knock on ``room_id`` through the first of ``servers`` that takes the knock; it is
        kept as the user's out-of-band membership (we are not in the room). Returns its ID."""
        event_id = await self._through(
            servers, "knock", user_id, room_id, content, self._knock_via
        )
        self.notifier.notify([room_id], [user_id])
        return event_id

    async def _through(
        self,
        servers: Sequence[str],
        membership: str,
        user_id: str,
        room_id: str,
        content: dict[str, Any],
        attempt: Callable[[str, str, str, dict[str, Any]], Awaitable[str | None]],
    ) -> str:
        """``attempt`` with each server in turn until one succeeds; the most telling refusal
        (403/404, then a restricted room's "ask another server") if none does."""
        if not servers:
            raise NotFound("No known servers")
        refusal: MatrixError | None = None
        for server in servers:
            try:
                return await attempt(server, user_id, room_id, content) or ""
            except FederationHttpError as e:
                if e.errcode == Codes.INCOMPATIBLE_ROOM_VERSION:
                    raise BadRequest(
                        e.error or "This server does not support the room's version",
                        Codes.INCOMPATIBLE_ROOM_VERSION,
                    ) from None
                logger.info(
                    "%s of %s to %s via %s failed: %s", membership, user_id, room_id, server, e
                )
                if e.status in (403, 404) and (refusal is None or refusal.status == 400):
                    message = e.error or f"Not allowed to {membership} this room"
                    refusal = Forbidden(message) if e.status == 403 else NotFound(message)
                elif e.errcode in _TRY_ANOTHER_SERVER and refusal is None:
                    # A restricted room this server cannot vouch for: another one may.
                    refusal = BadRequest(e.error or "Unable to authorise the join", e.errcode)
            except (FederationError, _ServerFailed) as e:
                logger.info(
                    "%s of %s to %s via %s failed: %s", membership, user_id, room_id, server, e
                )
        if refusal is not None:
            raise refusal
        raise MatrixError(502, Codes.UNKNOWN, f"Failed to {membership} the room through any server")

    async def _knock_via(
        self, server: str, user_id: str, room_id: str, content: dict[str, Any]
    ) -> str:
        versions = [v.identifier for v in KNOWN_ROOM_VERSIONS.values() if v.knock_join_rule]
        answer = await self.client.get_json(
            server,
            fed_path("/_matrix/federation/v1/make_knock/{}/{}", room_id, user_id),
            {"ver": versions},
        )
        version, knock = self._event_from_answer(answer, room_id, user_id, "knock", content)
        if not version.knock_join_rule:
            raise _ServerFailed("the room's version has no knocks")
        response = await self.client.put_json(
            server,
            fed_path("/_matrix/federation/v1/send_knock/{}/{}", room_id, knock.event_id),
            knock.federation_json(),
        )
        if not isinstance(response, dict):
            raise _ServerFailed("send_knock answer is not an object")
        # The stripped state the resident answered with is what /sync shows of the room
        # (``knock_state``), kept on the outlier as an invite keeps ``invite_room_state``.
        pdu = {**knock.pdu, "unsigned": {"knock_room_state": knock_room_state(response)}}
        kept = Event(pdu, version)
        await self.store.db.run_in_transaction(
            "remote_knock", record_out_of_band_txn, self.store, kept
        )
        return knock.event_id

    async def _join_via(
        self, server: str, user_id: str, room_id: str, content: dict[str, Any]
    ) -> None:
        version, join, response = await self._make_and_send_join(server, user_id, room_id, content)
        state = await self._checked(version, response.get("state"), server, room_id)
        chain = await self._checked(version, response.get("auth_chain"), server, room_id)
        state_map = {e.state_tuple: e for e in state if e.is_state()}
        create = state_map.get(CREATE_KEY)
        if create is None:
            raise _ServerFailed("the returned state has no create event")
        try:
            check_auth_rules(version, join, state_map)
        except AuthError as e:
            raise _ServerFailed(f"the join is not allowed by the returned state: {e}") from None
        try:
            await self.received.persist_joined_room(version, join, state, chain)
        except PduRejected as e:
            raise _ServerFailed(f"the answer is unusable: {e.reason}") from None
        await self.store.db.run_in_transaction(
            "remote_join_done", self._joined_txn, user_id, room_id
        )

    async def _make_and_send_join(
        self, server: str, user_id: str, room_id: str, content: dict[str, Any]
    ) -> tuple[RoomVersion, Event, dict[str, Any]]:
        """make_join, our event from the template, send_join: the room version, the join as
        the resident signed it, and the send_join answer."""
        answer = await self.client.get_json(
            server,
            fed_path("/_matrix/federation/v1/make_join/{}/{}", room_id, user_id),
            {"ver": list(KNOWN_ROOM_VERSIONS)},
        )
        version, join = self._event_from_answer(answer, room_id, user_id, "join", content)
        response = await self.client.put_json(
            server,
            fed_path("/_matrix/federation/v2/send_join/{}/{}", room_id, join.event_id),
            join.federation_json(),
            {"omit_members": "false"},
        )
        if not isinstance(response, dict):
            raise _ServerFailed("send_join answer is not an object")
        join = await self._resident_copy(version, join, response.get("event"), server)
        return version, join, response

    # --- a room we are in, but cannot vouch for the join of ----------------------------------
    async def join_through_resident(
        self, user_id: str, room_id: str, servers: Sequence[str], content: dict[str, Any]
    ) -> str:
        """Join a restricted room this server is in, but where none of our users may vouch
        for the join: through a resident whose users may (as Synapse). The signed join then
        goes through the received-events pipeline like any event of the room. Returns its
        ID."""
        event_id = await self._through(
            servers, "join", user_id, room_id, content, self._join_in_room_via
        )
        self.notifier.notify([room_id], [user_id])
        return event_id

    async def _join_in_room_via(
        self, server: str, user_id: str, room_id: str, content: dict[str, Any]
    ) -> str:
        _version, join, _response = await self._make_and_send_join(
            server, user_id, room_id, content
        )
        try:
            await self.received.on_receive_pdu(server, join)
        except PduRejected as e:
            raise _ServerFailed(f"the join was rejected here: {e.reason}") from None
        current = await self.store.state.get_current_state_event_id(
            room_id, "m.room.member", user_id
        )
        if current != join.event_id:
            raise _ServerFailed("the join did not become the room's state here")
        return join.event_id

    async def _joined_txn(self, txn: Transaction, user_id: str, room_id: str) -> None:
        # The user's membership is now in the room's own state.
        await self.store.out_of_band.delete_txn(txn, user_id, room_id)

    async def _resident_copy(
        self, version: RoomVersion, ours: Event, returned: Any, server: str
    ) -> Event:
        """The join as the resident sent it on (it may have added its signature)."""
        if not isinstance(returned, dict):
            return ours
        try:
            event = await self.received.check_pdu(version, returned, origin=server)
        except PduRejected:
            return ours
        if event.event_id != ours.event_id or event.internal.redacted:
            return ours
        return event

    async def _checked(
        self, version: RoomVersion, pdus: Any, server: str, room_id: str
    ) -> list[Event]:
        if not isinstance(pdus, list):
            raise _ServerFailed("send_join answer lacks state or auth_chain")
        events: list[Event] = []
        for pdu in pdus:
            try:
                # Format only: persist_joined_room checks signatures and hashes of them all.
                event = parse_pdu(version, pdu)
            except PduRejected as e:
                # As Synapse: a bad event is left out; the auth checks decide.
                logger.warning("dropping an event of %s's send_join answer: %s", server, e)
                continue
            if event.room_id != room_id:
                raise _ServerFailed("the answer holds an event of another room")
            events.append(event)
        return events

    def _event_from_answer(
        self, answer: Any, room_id: str, user_id: str, membership: str, content: dict[str, Any]
    ) -> tuple[RoomVersion, Event]:
        if not isinstance(answer, dict):
            raise _ServerFailed("the make_join/make_leave answer is not an object")
        try:
            version = get_room_version(answer.get("room_version", "1"))
        except UnsupportedRoomVersion:
            raise _ServerFailed("the room's version is not one we support") from None
        try:
            template = check_template(
                answer.get("event"),
                room_id=room_id,
                user_id=user_id,
                membership=membership,
                room_version=version,
            )
            event = event_from_template(
                version, self.signer, template, content=content, origin_server_ts=self.clock()
            )
        except BadTemplate as e:
            raise _ServerFailed(f"bad template: {e}") from None
        return version, event

    # --- rejecting an out-of-band invite -----------------------------------------------------
    async def reject_invite(self, user_id: str, room_id: str, content: dict[str, Any]) -> None:
        """Leave a room we only know from an invite received over federation, or withdraw a
        knock sent through another server (then the room ID's server is asked, as Synapse:
        the knock's own sender is ours)."""
        invite_row = await self.store.out_of_band.get(user_id, room_id)
        if invite_row is None or invite_row.membership not in ("invite", "knock"):
            raise Forbidden("You are not invited to this room")
        invite = await self.store.events.get_event(invite_row.event_id)
        if invite is None:
            raise Forbidden("You are not invited to this room")
        leave: Event | None = None
        for server in candidate_servers([domain_of(invite.sender)], room_id, self.server_name):
            try:
                leave = await self._leave_via(server, user_id, room_id, content)
                break
            except (FederationError, _ServerFailed) as e:
                logger.info("rejecting %s's invite to %s via %s: %s", user_id, room_id, server, e)
        if leave is None:
            leave = self._local_leave(invite, content)
        await self.store.db.run_in_transaction(
            "reject_remote_invite", record_out_of_band_txn, self.store, leave
        )
        self.notifier.notify([room_id], [user_id])

    async def _leave_via(
        self, server: str, user_id: str, room_id: str, content: dict[str, Any]
    ) -> Event:
        answer = await self.client.get_json(
            server, fed_path("/_matrix/federation/v1/make_leave/{}/{}", room_id, user_id)
        )
        _version, leave = self._event_from_answer(answer, room_id, user_id, "leave", content)
        await self.client.put_json(
            server,
            fed_path("/_matrix/federation/v2/send_leave/{}/{}", room_id, leave.event_id),
            leave.federation_json(),
        )
        return leave

    def _local_leave(self, invite: Event, content: dict[str, Any]) -> Event:
        """A leave that follows the invite, for our own records only (no server took it)."""
        version = invite.room_version
        ref: Any = invite.event_id
        if version.event_refs_carry_hashes:
            digest = compute_reference_hash(version, invite.pdu)
            ref = [invite.event_id, {"sha256": encode_base64(digest)}]
        pdu: dict[str, Any] = {
            "type": "m.room.member",
            "room_id": invite.room_id,
            "sender": invite.state_key,
            "state_key": invite.state_key,
            "content": {**content, "membership": "leave"},
            "depth": invite.depth + 1,
            "origin_server_ts": self.clock(),
            "prev_events": [ref],
            "auth_events": [ref],
        }
        if version.event_refs_carry_hashes:
            pdu["event_id"] = new_opaque_event_id(self.server_name)
        add_content_hash(pdu)
        sign_event(version, pdu, self.server_name, self.signer.signing_key)
        return Event(pdu, version)
