"""Helpers for the tests of receiving events over federation.

``Remote`` is a fake remote homeserver without a network: it holds a signing key (seeded into our
``store.keys``, so the keyring trusts it), builds signed PDUs for its users on top of our room,
keeps every event it knows, and answers our server's gap-filling requests (``get_missing_events``,
``state_ids``, ``event``, ``state``, ``event_auth``) through :class:`RemoteRequester`, which stands
in for the federation client. Its name is ``localhost:PORT``, which our IP policy refuses to
contact, so any real request our server attempts fails fast instead of hanging.

``signed_request`` performs an X-Matrix-signed request against the in-process test server.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from homeserver.app import Homeserver
from homeserver.auth.selection import auth_types_for_event
from homeserver.crypto.canonical_json import encode_canonical_json
from homeserver.crypto.signing import generate_signing_key, get_verify_key, key_id
from homeserver.events.event import Event
from homeserver.events.hashes import add_content_hash
from homeserver.events.signing import sign_event
from homeserver.federation.client import FederationHttpError
from homeserver.federation.xmatrix import authorization_header
from homeserver.room_versions import RoomVersion, get_room_version
from homeserver.storage.keys import ServerKey
from tests.harness import FIXED_NOW_MS, TestServer

_ports = itertools.count(40001)
FAR_FUTURE_MS = FIXED_NOW_MS + 10 * 365 * 24 * 3600 * 1000


class Remote:
    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"localhost:{next(_ports)}"
        self.signing_key = generate_signing_key("remote1")
        #: every event this server knows, by ID (PDU dicts as it would serve them).
        self.events: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self._ts = itertools.count(FIXED_NOW_MS + 1_000_000)

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.name}"

    async def seed_key(self, hs: Homeserver) -> None:
        verify_key = get_verify_key(self.signing_key)
        await hs.store.keys.store_server_keys(
            [ServerKey(self.name, key_id(verify_key), bytes(verify_key), FAR_FUTURE_MS, 0)]
        )

    def sign(self, room_version: RoomVersion, pdu: dict[str, Any]) -> dict[str, Any]:
        pdu.pop("hashes", None)
        pdu.pop("signatures", None)
        add_content_hash(pdu)
        sign_event(room_version, pdu, self.name, self.signing_key)
        return pdu

    def learn(self, events: list[Event] | list[dict[str, Any]], room_version: RoomVersion) -> None:
        """Make our events known to the remote (it would have them from our /send)."""
        for item in events:
            event = item if isinstance(item, Event) else Event(item, room_version)
            self.events[event.event_id] = event.pdu

    async def build(
        self,
        hs: Homeserver,
        room_id: str,
        *,
        type: str,
        sender: str,
        content: dict[str, Any],
        state_key: str | None = None,
        prev_events: list[str] | None = None,
        auth_state: dict[tuple[str, str], str] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A signed PDU on top of ``prev_events`` (default: our forward extremities), citing
        auth events from ``auth_state`` (default: our current state). Returns (event ID, PDU)."""
        room = await hs.store.rooms.get_room(room_id)
        assert room is not None
        room_version = get_room_version(room.room_version)
        if prev_events is None:
            prev_events = (await hs.store.events.get_forward_extremities(room_id)).event_ids
        if auth_state is None:
            auth_state = await hs.store.state.get_current_state_ids(room_id)
        keys = auth_types_for_event(room_version, type, sender, state_key, content)
        if room_version.create_event_in_auth_events:
            keys = [("m.room.create", ""), *keys]
        auth_ids = list(dict.fromkeys(auth_state[k] for k in keys if k in auth_state))
        depth = 1 + max([await self._depth(hs, room_version, p) for p in prev_events])
        pdu: dict[str, Any] = {
            "type": type,
            "room_id": room_id,
            "sender": sender,
            "content": content,
            "depth": depth,
            "origin_server_ts": next(self._ts),
            "prev_events": prev_events,
            "auth_events": auth_ids,
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        self.sign(room_version, pdu)
        event = Event(pdu, room_version)
        self.events[event.event_id] = pdu
        return event.event_id, pdu

    async def _depth(self, hs: Homeserver, room_version: RoomVersion, event_id: str) -> int:
        if event_id in self.events:
            return int(self.events[event_id]["depth"])
        event = await hs.store.events.get_event(event_id)
        assert event is not None, event_id
        return event.depth

    async def receive(self, hs: Homeserver, pdu: dict[str, Any]) -> Event:
        """Hand ``pdu`` to our server's receive pipeline as if it came in a transaction."""
        room_version = await hs.received_events.room_version_of(pdu["room_id"])
        event = await hs.received_events.check_pdu(room_version, pdu, origin=self.name)
        await hs.received_events.on_receive_pdu(self.name, event)
        return event

    async def join(self, hs: Homeserver, room_id: str, localpart: str = "r") -> str:
        """A remote user joins our (public) room through our receive pipeline."""
        user = self.user(localpart)
        event_id, pdu = await self.build(
            hs,
            room_id,
            type="m.room.member",
            sender=user,
            state_key=user,
            content={"membership": "join"},
        )
        await self.receive(hs, pdu)
        return event_id


class RemoteRequester:
    """Stands in for FederationClient: answers our server's requests from a Remote's events."""

    def __init__(self, remote: Remote, room_version: RoomVersion) -> None:
        self.remote = remote
        self.room_version = room_version
        #: state before each event as the remote sees it: event ID → state map.
        self.state_before: dict[str, dict[tuple[str, str], str]] = {}

    def _pdus(self, ids: Any) -> list[dict[str, Any]]:
        return [self.remote.events[i] for i in ids if i in self.remote.events]

    async def post_json(
        self, destination: str, path: str, content: Any, query: Any = None, **_: Any
    ) -> Any:
        self.remote.requests.append(("POST", path))
        assert destination == self.remote.name
        if "/get_missing_events/" in path:
            seen = set(content["earliest_events"]) | set(content["latest_events"])
            frontier = list(content["latest_events"])
            found: list[dict[str, Any]] = []
            while frontier and len(found) < content["limit"]:
                nxt = []
                for event_id in frontier:
                    for prev in self.remote.events.get(event_id, {}).get("prev_events", []):
                        if prev not in seen and prev in self.remote.events:
                            seen.add(prev)
                            found.append(self.remote.events[prev])
                            nxt.append(prev)
                frontier = nxt
            return {"events": found[: content["limit"]]}
        raise FederationHttpError(404, "M_UNRECOGNIZED", "not served", None)

    async def get_json(self, destination: str, path: str, query: Any = None, **_: Any) -> Any:
        self.remote.requests.append(("GET", path))
        query = query or {}
        if "/state_ids/" in path or "/state/" in path:
            state = self.state_before.get(query["event_id"])
            if state is None:
                raise FederationHttpError(404, "M_NOT_FOUND", "no state", None)
            chain: set[str] = set()
            todo = list(state.values())
            while todo:
                pdu = self.remote.events.get(todo.pop())
                for auth_id in pdu.get("auth_events", []) if pdu else []:
                    if auth_id not in chain:
                        chain.add(auth_id)
                        todo.append(auth_id)
            if "/state_ids/" in path:
                return {"pdu_ids": list(state.values()), "auth_chain_ids": sorted(chain)}
            return {"pdus": self._pdus(state.values()), "auth_chain": self._pdus(chain)}
        if "/event/" in path:
            event_id = path.rsplit("/", 1)[1]
            from urllib.parse import unquote

            event_id = unquote(event_id)
            if event_id not in self.remote.events:
                raise FederationHttpError(404, "M_NOT_FOUND", "unknown", None)
            return {
                "origin": self.remote.name,
                "origin_server_ts": 0,
                "pdus": self._pdus([event_id]),
            }
        raise FederationHttpError(404, "M_UNRECOGNIZED", "not served", None)


async def signed_request(
    server: TestServer,
    remote: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    origin: str | None = None,
) -> tuple[int, Any]:
    """An X-Matrix-signed request from ``remote`` (a :class:`Remote` or a FakeRemoteServer;
    ``path`` percent-encoded, with its query), sent exactly as signed."""
    origin = origin or getattr(remote, "name", None) or remote.server_name
    header = authorization_header(
        remote.signing_key, method, path, origin, server.hs.server_name, body
    )
    data = None if body is None else encode_canonical_json(body)
    status, text = await server.call_exact(
        method,
        path,
        data=data,
        headers={"Authorization": header, "Content-Type": "application/json"},
    )
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text
