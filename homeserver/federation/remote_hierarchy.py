"""Asking other servers about a room we are not in (``GET /_matrix/federation/v1/hierarchy``),
for a space's hierarchy and for room summaries. Servers are tried in turn until one answers
usably; the answer is checked and reduced to the fields the spec defines, with their types, so
nothing else another server says reaches a client."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from homeserver.federation.client import FederationClient, FederationError
from homeserver.rooms.space_entries import RemoteAnswer, Summary, valid_via
from homeserver.types import room_id_error

logger = logging.getLogger(__name__)

HIERARCHY = "/_matrix/federation/v1/hierarchy/"
#: most entries of each list taken from one answer.
MAX_ENTRIES = 500
_STRINGS = (
    "name",
    "topic",
    "canonical_alias",
    "avatar_url",
    "join_rule",
    "room_type",
    "encryption",
    "room_version",
)


class InvalidAnswer(Exception):
    pass


def clean_entry(value: Any) -> dict[str, Any] | None:
    """A room entry of an answer with only the spec's fields of the right types; None when it
    has no valid ``room_id``."""
    if not isinstance(value, dict):
        return None
    room_id = value.get("room_id")
    if not isinstance(room_id, str) or room_id_error(room_id) is not None:
        return None
    members = value.get("num_joined_members")
    entry: dict[str, Any] = {
        "room_id": room_id,
        "num_joined_members": members
        if isinstance(members, int) and not isinstance(members, bool) and members >= 0
        else 0,
        "world_readable": value.get("world_readable") is True,
        "guest_can_join": value.get("guest_can_join") is True,
    }
    for key in _STRINGS:
        if isinstance(value.get(key), str) and value[key]:
            entry[key] = value[key]
    allowed = value.get("allowed_room_ids")
    if isinstance(allowed, list):
        entry["allowed_room_ids"] = [
            r for r in allowed[:MAX_ENTRIES] if isinstance(r, str) and room_id_error(r) is None
        ]
    return entry


def clean_child(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or value.get("type") != "m.space.child":
        return None
    state_key, content = value.get("state_key"), value.get("content")
    if not isinstance(state_key, str) or room_id_error(state_key) is not None:
        return None
    if not isinstance(content, dict) or not valid_via(content):
        return None
    sender, ts = value.get("sender"), value.get("origin_server_ts")
    return {
        "type": "m.space.child",
        "state_key": state_key,
        "content": content,
        "sender": sender if isinstance(sender, str) else "",
        "origin_server_ts": ts if isinstance(ts, int) and not isinstance(ts, bool) else 0,
    }


def parse_answer(room_id: str, body: Any) -> RemoteAnswer:
    if not isinstance(body, dict):
        raise InvalidAnswer("not an object")
    raw_room = body.get("room")
    room = clean_entry(raw_room)
    if room is None or room["room_id"] != room_id:
        raise InvalidAnswer("room does not match the request")
    assert isinstance(raw_room, dict)
    raw_children_state = raw_room.get("children_state", [])
    if not isinstance(raw_children_state, list):
        raise InvalidAnswer("children_state is not a list")
    children_state = [c for c in map(clean_child, raw_children_state[:MAX_ENTRIES]) if c]
    raw_children = body.get("children", [])
    raw_inaccessible = body.get("inaccessible_children", [])
    if not isinstance(raw_children, list) or not isinstance(raw_inaccessible, list):
        raise InvalidAnswer("children or inaccessible_children is not a list")
    children = {e["room_id"]: e for e in map(clean_entry, raw_children[:MAX_ENTRIES]) if e}
    inaccessible = frozenset(r for r in raw_inaccessible[:MAX_ENTRIES] if isinstance(r, str))
    return RemoteAnswer(Summary(room_id, room, children_state), children, inaccessible)


class RemoteHierarchy:
    def __init__(self, client: FederationClient) -> None:
        self.client = client

    async def fetch(
        self, room_id: str, via: Sequence[str], suggested_only: bool
    ) -> RemoteAnswer | None:
        """The first usable answer of the servers ``via``, None if none gave one."""
        path = HIERARCHY + quote(room_id, safe="")
        query = {"suggested_only": "true" if suggested_only else "false"}
        for server in via:
            try:
                body = await self.client.get_json(server, path, query, timeout=30.0)
                return parse_answer(room_id, body)
            except (FederationError, InvalidAnswer) as e:
                logger.info("hierarchy of %s from %s failed: %s", room_id, server, e)
        return None
