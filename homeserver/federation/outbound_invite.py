"""Delivering one invite of a remote user: ``PUT /_matrix/federation/v2/invite/{roomId}/{eventId}``
(spec §"Inviting to a room"; federation-minimum.md §5).

The invitee's server answers with our event plus its own signature. We check that it is exactly
our event and that the signature is valid, then keep that signature in our stored copy (the event
ID does not change: signatures are outside the reference hash). For v1/v2 rooms a server that
does not know v2 (400/404) is asked with v1, as the spec says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from homeserver.events.event import Event
from homeserver.events.redaction import prune_event_dict
from homeserver.federation.client import FederationClient, FederationHttpError, fed_path
from homeserver.room_versions import EventIdFormat
from homeserver.rooms.prejoin_state import stripped_state_keys
from homeserver.storage import Store

logger = logging.getLogger(__name__)

V2_INVITE = "/_matrix/federation/v2/invite/{}/{}"
V1_INVITE = "/_matrix/federation/v1/invite/{}/{}"


#: Answers that will not change on a retry: the invitee's server refuses (spec: 400 for a bad or
#: incompatible invite, 403 when not allowed; 404 when it has no such endpoint).
REFUSED_STATUSES = frozenset({400, 403, 404})


class Verifier(Protocol):
    async def verify_json(
        self, server_name: str, signed: dict, *, valid_at_ts: int | None = None
    ) -> None: ...


class InviteOutcome(Enum):
    DELIVERED = "delivered"
    #: the invitee's server refused it for good (or it cannot be sent): drop the entry.
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class InviteResult:
    outcome: InviteOutcome
    reason: str = ""


class BadInviteResponse(Exception):
    """The invitee's server answered 200 with something that is not our event signed by it."""


async def invite_room_state(store: Store, invite: Event) -> list[dict[str, Any]]:
    """Full PDUs of the room's prejoin state as it stands at the invite."""
    state = await store.state.get_state_ids_at_event(invite.event_id)
    if state is None:
        state = await store.state.get_current_state_ids(invite.room_id)
    keys = stripped_state_keys("invite", invite.sender)
    ids = [state[key] for key in keys if key in state]
    found = await store.events.get_events(ids)
    return [found[i].federation_json() for i in ids if i in found]


def check_signed_invite(invite: Event, returned: Any, invitee_server: str) -> dict[str, str]:
    """The invitee server's signatures from the returned event, if it is our event unchanged
    apart from signatures; raises :class:`BadInviteResponse` otherwise (signature validity is
    checked by the caller, against the keyring)."""
    if not isinstance(returned, dict) or not isinstance(returned.get("event"), dict):
        raise BadInviteResponse("the answer has no event object")
    event = returned["event"]

    def comparable(pdu: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in pdu.items() if k not in ("signatures", "unsigned")}

    if comparable(event) != comparable(invite.pdu):
        raise BadInviteResponse("the returned event is not the invite we sent")
    signatures = event.get("signatures")
    theirs = signatures.get(invitee_server) if isinstance(signatures, dict) else None
    if not isinstance(theirs, dict) or not theirs:
        raise BadInviteResponse(f"the returned event carries no signature of {invitee_server}")
    return {str(k): str(v) for k, v in theirs.items()}


async def send_invite(
    client: FederationClient,
    store: Store,
    verifier: Verifier | None,
    destination: str,
    invite: Event,
    *,
    timeout: float,
) -> InviteResult:
    """Deliver ``invite`` to ``destination``. Raises FederationUnreachable, or
    FederationHttpError for answers worth retrying (5xx, 429…); returns REFUSED for a final
    refusal."""
    room_version = invite.room_version
    state = await invite_room_state(store, invite)
    path = fed_path(V2_INVITE, invite.room_id, invite.event_id)
    body = {
        "room_version": room_version.identifier,
        "event": invite.pdu,
        "invite_room_state": state,
    }
    legacy = room_version.event_id_format is EventIdFormat.OPAQUE_WITH_DOMAIN
    try:
        try:
            answer = await client.put_json(destination, path, body, timeout=timeout)
        except FederationHttpError as e:
            if not (legacy and e.status in (400, 404)):
                raise
            answer = await _send_v1(client, destination, invite, state, timeout=timeout)
    except FederationHttpError as e:
        if e.status in REFUSED_STATUSES:
            return InviteResult(InviteOutcome.REFUSED, f"{e.status} {e.errcode} {e.error}")
        raise
    try:
        signatures = check_signed_invite(invite, answer, destination)
    except BadInviteResponse as e:  # the invitee's fault: retrying will not fix it
        return InviteResult(InviteOutcome.REFUSED, f"bad answer: {e}")
    if verifier is not None:
        try:
            await verifier.verify_json(destination, prune_event_dict(room_version, answer["event"]))
        except Exception as e:
            # The invitee has the invite either way; we only decline to keep a signature we
            # could not check.
            return InviteResult(InviteOutcome.REFUSED, f"signature not verified: {e}")
    if await store.outbox.add_event_signatures(invite.event_id, destination, signatures):
        store.events.invalidate(invite.event_id)
    return InviteResult(InviteOutcome.DELIVERED)


async def _send_v1(
    client: FederationClient,
    destination: str,
    invite: Event,
    state: list[dict[str, Any]],
    *,
    timeout: float,
) -> Any:
    """v1 takes the event itself, room state in ``unsigned``, and answers ``[200, {"event"}]``."""
    event = dict(invite.pdu)
    event["unsigned"] = {**invite.unsigned, "invite_room_state": state}
    path = fed_path(V1_INVITE, invite.room_id, invite.event_id)
    answer = await client.put_json(destination, path, event, timeout=timeout)
    if isinstance(answer, list) and len(answer) == 2:
        answer = answer[1]
    return answer
