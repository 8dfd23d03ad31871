"""An event of a room, read through its room version's format.

The PDU dict is kept as received or built (federation format); the event ID is computed once.
Everything else is a view of that dict. Server-side facts about the event that are not part of
the PDU (rejection, outlier, stream position) live in ``internal``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.events.ids import compute_event_id, room_id_from_create_event_id
from homeserver.room_versions import RoomVersion


@dataclass(slots=True)
class InternalMetadata:
    rejected_reason: str | None = None
    outlier: bool = False
    stream_ordering: int | None = None
    #: a redacted copy (content hash mismatch on receipt, or redacted later).
    redacted: bool = False
    #: received over federation, failed auth against the room's current state: stored and used
    #: in state resolution, but never a forward extremity nor shown to clients.
    soft_failed: bool = False
    #: a state event: the event it replaced at its key in the state before it (None: none,
    #: or unknown — an outlier, or stored before this was recorded).
    replaces_state: str | None = None


def _ref_ids(refs: Any) -> tuple[str, ...]:
    """Event IDs from ``prev_events``/``auth_events`` in either format."""
    if not isinstance(refs, list):
        return ()
    ids: list[str] = []
    for ref in refs:
        if isinstance(ref, str):
            ids.append(ref)
        elif isinstance(ref, list | tuple) and ref and isinstance(ref[0], str):
            ids.append(ref[0])
    return tuple(ids)


class Event:
    __slots__ = ("_auth_ids", "_prev_ids", "event_id", "internal", "pdu", "room_version")

    def __init__(
        self,
        pdu: dict[str, Any],
        room_version: RoomVersion,
        *,
        event_id: str | None = None,
        internal: InternalMetadata | None = None,
    ) -> None:
        self.pdu = pdu
        self.room_version = room_version
        self.event_id = event_id if event_id is not None else compute_event_id(room_version, pdu)
        self.internal = internal if internal is not None else InternalMetadata()
        self._prev_ids: tuple[str, ...] | None = None
        self._auth_ids: tuple[str, ...] | None = None

    # --- the PDU's fields ---
    @property
    def type(self) -> str:
        return self.pdu["type"]

    @property
    def sender(self) -> str:
        return self.pdu["sender"]

    @property
    def room_id(self) -> str:
        room_id = self.pdu.get("room_id")
        if room_id is None and self.room_version.room_id_is_create_event_hash:
            return room_id_from_create_event_id(self.event_id)
        return room_id

    @property
    def state_key(self) -> str | None:
        return self.pdu.get("state_key")

    def is_state(self) -> bool:
        return "state_key" in self.pdu

    @property
    def content(self) -> dict[str, Any]:
        content = self.pdu.get("content")
        return content if isinstance(content, dict) else {}

    @property
    def depth(self) -> int:
        return self.pdu.get("depth", 0)

    @property
    def origin_server_ts(self) -> int:
        return self.pdu.get("origin_server_ts", 0)

    @property
    def membership(self) -> str | None:
        return self.content.get("membership") if self.type == "m.room.member" else None

    @property
    def redacts(self) -> str | None:
        """The target of a redaction, wherever this version keeps it."""
        if self.type != "m.room.redaction":
            return None
        if self.room_version.top_level_redacts:
            return self.pdu.get("redacts")
        return self.content.get("redacts")

    @property
    def signatures(self) -> dict[str, dict[str, str]]:
        return self.pdu.get("signatures", {})

    @property
    def hashes(self) -> dict[str, str]:
        return self.pdu.get("hashes", {})

    @property
    def unsigned(self) -> dict[str, Any]:
        return self.pdu.get("unsigned", {})

    def prev_event_ids(self) -> tuple[str, ...]:
        if self._prev_ids is None:
            self._prev_ids = _ref_ids(self.pdu.get("prev_events"))
        return self._prev_ids

    def auth_event_ids(self) -> tuple[str, ...]:
        if self._auth_ids is None:
            self._auth_ids = _ref_ids(self.pdu.get("auth_events"))
        return self._auth_ids

    # --- derived ---
    @property
    def state_tuple(self) -> tuple[str, str]:
        state_key = self.state_key
        if state_key is None:
            raise ValueError("not a state event")
        return (self.type, state_key)

    @property
    def rejected(self) -> bool:
        return self.internal.rejected_reason is not None

    def federation_json(self) -> dict[str, Any]:
        """The PDU as sent to other servers (v3+: without ``event_id``)."""
        return self.pdu

    def __repr__(self) -> str:
        key = f" {self.state_key!r}" if self.is_state() else ""
        return f"<Event {self.event_id} {self.type}{key} from {self.sender}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.event_id == self.event_id

    def __hash__(self) -> int:
        return hash(self.event_id)
