"""Membership changes a local user asks for: join, knock, leave (also rejecting an invite),
invite, kick, ban, unban, forget.

This is the one gate for ``m.room.member`` events from clients: the dedicated endpoints and
``PUT /rooms/{roomId}/state/m.room.member/{userId}`` (``set_membership``, which picks the
change from the content's ``membership``, as Synapse does) share the checks, the admin block
and the join rate limit. A client's ``join_authorised_via_users_server`` is always dropped: for
a restricted room the server picks the authoriser itself (homeserver/rooms/restricted.py).

Each change is one ``m.room.member`` event sent through the event sender, under the room lock,
where the auth rules have the last word. The checks before it exist to give the messages
clients know from Synapse ("is already in the room", "is not in the room") and to refuse what
the auth rules would allow but a client never means (an "unban" of a joined user would kick
them).

A room none of our users is joined to (unknown, or known only from an invite received over
federation) is joined through another server (``remote``: make_join/send_join), found from
the client's ``server_name``/``via``, the alias's servers, the inviter's server and the room
ID's server; with none, 404 "No known servers". Rejecting such an invite goes through the
inviter's server (make_leave/send_leave).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.auth.rules import AuthError
from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError, NotFound
from homeserver.events.draft import EventDraft
from homeserver.events.event import Event
from homeserver.ratelimit import RateLimiters
from homeserver.room_versions import RoomVersion, get_room_version
from homeserver.rooms.client_errors import client_event_errors
from homeserver.rooms.creation import ProfileLookup
from homeserver.rooms.remote_joins import RemoteJoins, candidate_servers
from homeserver.rooms.restricted import (
    AUTHORISER_KEY,
    UNABLE_TO_GRANT_JOIN,
    RestrictedJoins,
    allows_knock,
    is_restricted,
)
from homeserver.rooms.sender import EventSender
from homeserver.rooms.shadow_ban import ShadowBanCheck, fake_event_id, nobody, suspended_error
from homeserver.storage import Store
from homeserver.storage.database import Transaction
from homeserver.storage.rooms import RoomRecord
from homeserver.types import domain_of, room_alias_error, room_id_error, user_id_error
from homeserver.visibility.client import get_membership

NO_KNOWN_SERVERS = "No known servers"
#: Called after a local user joined a room (user_id, room_id): an upgraded room's per-user data
#: follows them (federation/remote_upgrades.py).
JoinedHook = Callable[[str, str], Awaitable[None]]
#: After many local users joined a room at once (user_ids, room_id).
JoinedManyHook = Callable[[Sequence[str], str], Awaitable[None]]
#: Runs inside the transaction of a batch of joins with the users joined (``join_local_many``).
BatchJoinHook = Callable[[Transaction, list[str]], Awaitable[None]]
#: ``displayname`` / ``avatar_url`` of many local users at once.
ProfilesLookup = Callable[[Sequence[str]], Awaitable[Mapping[str, Mapping[str, str]]]]
#: another server's alias → ``{room_id, servers}``.
AliasResolver = Callable[[str], Awaitable[dict[str, Any]]]


async def _no_profile(user_id: str) -> dict[str, str]:
    return {}


_JOINED_OR_INVITED = {"join": "in the room", "invite": "invited to this room"}


class MembershipService:
    def __init__(
        self,
        store: Store,
        sender: EventSender,
        ratelimiters: RateLimiters,
        *,
        server_name: str,
        profiles: ProfileLookup = _no_profile,
        remote: RemoteJoins | None = None,
        remote_aliases: AliasResolver | None = None,
        on_joined: JoinedHook | None = None,
        on_joined_many: JoinedManyHook | None = None,
        profiles_many: ProfilesLookup | None = None,
        shadow_banned: ShadowBanCheck = nobody,
        suspended: ShadowBanCheck = nobody,
    ) -> None:
        self.store = store
        #: suspended users may leave but not join, knock or invite.
        self._suspended = suspended
        #: a shadow-banned inviter's invites are answered as sent, never sent (shadow_ban.py).
        self._shadow_banned = shadow_banned
        self.sender = sender
        self.ratelimiters = ratelimiters
        self.server_name = server_name
        self._profiles = profiles
        #: many users' profiles in one read (a batch of joins); else one lookup each.
        self._profiles_many = profiles_many
        self.restricted = RestrictedJoins(store, server_name)
        #: joins through other servers and their aliases; None without federation.
        self.remote = remote
        self.remote_aliases = remote_aliases
        #: after a join through our own server (joins through another call their own).
        self.on_joined = on_joined
        #: after a batch of joins (``join_local_many``); else ``on_joined`` for each.
        self.on_joined_many = on_joined_many

    # --- join ------------------------------------------------------------------------------
    async def resolve_room(self, room_id_or_alias: str) -> tuple[str, list[str]]:
        """The room ID named by a room ID or an alias, and the servers an alias's server
        says are in the room (none for a room ID or a local alias)."""
        if room_id_or_alias.startswith("#"):
            reason = room_alias_error(room_id_or_alias)
            if reason:
                raise BadRequest(reason, Codes.INVALID_PARAM)
            if domain_of(room_id_or_alias) != self.server_name:
                if self.remote_aliases is None:
                    raise NotFound(NO_KNOWN_SERVERS)
                try:
                    answer = await self.remote_aliases(room_id_or_alias)
                except MatrixError as e:
                    if e.status >= 500:  # the alias's server could not be asked
                        raise NotFound(NO_KNOWN_SERVERS) from None
                    raise
                return answer["room_id"], list(answer["servers"])
            alias = await self.store.aliases.get_alias(room_id_or_alias)
            if alias is None:
                raise NotFound(f"Room alias {room_id_or_alias} not found")
            return alias.room_id, []
        reason = room_id_error(room_id_or_alias)
        if reason:
            raise BadRequest(
                f"{room_id_or_alias!r} is not a valid room ID or alias: {reason}",
                Codes.INVALID_PARAM,
            )
        return room_id_or_alias, []

    async def join(
        self,
        user_id: str,
        room_id_or_alias: str,
        *,
        reason: str | None = None,
        servers: Sequence[str] = (),
    ) -> str:
        """Join a room by ID or alias (``servers``: the client's ``server_name``/``via``, for
        a room this server is not in); returns the room ID."""
        if self._suspended(user_id):
            raise suspended_error("Joining rooms")
        room_id, alias_servers = await self.resolve_room(room_id_or_alias)
        content: dict[str, Any] = {"membership": "join"}
        content.update(await self._profile_content(user_id))
        if reason is not None:
            content["reason"] = reason
        await self._join(user_id, room_id, content, [*servers], alias_servers, profile=True)
        return room_id

    async def _join(
        self,
        user_id: str,
        room_id: str,
        content: dict[str, Any],
        servers: Sequence[str],
        alias_servers: Sequence[str],
        *,
        profile: bool,
    ) -> str:
        """The join (or, for a member, profile change) itself; returns the member event's ID.
        ``profile``: ``content`` was made here from the global profile (a repeat with the same
        profile and no reason sends nothing), rather than given by the client."""
        await self._refuse_blocked(room_id)
        room = await self.store.rooms.get_room(room_id)
        # Only the server decides who vouches for a restricted join.
        content.pop(AUTHORISER_KEY, None)
        remote_servers = await self._remote_servers(user_id, room, room_id, servers, alias_servers)
        if remote_servers is not None:
            assert self.remote is not None
            await self.ratelimiters.joins_remote.check(user_id)
            await self.remote.join(user_id, room_id, remote_servers, content)
            joined = await self.store.state.get_current_state_event_id(
                room_id, "m.room.member", user_id
            )
            return joined or ""
        if room is None:
            raise NotFound(NO_KNOWN_SERVERS)
        current = await get_membership(self.store, room_id, user_id)
        if current is not None and current.membership == "join":
            if _repeats(current, content, profile=profile):
                return current.event_id  # nothing would change: no new event (as Synapse)
        else:
            # Only real joins count against the limit, not profile refreshes (as Synapse).
            await self.ratelimiters.joins_local.check(user_id)
        if current is not None and current.membership == "ban":
            raise Forbidden("You are banned from this room")
        version = get_room_version(room.room_version)
        try:
            authoriser = await self.restricted.authoriser_for(room_id, version, user_id)
        except MatrixError as e:
            if e.errcode != UNABLE_TO_GRANT_JOIN or self.remote is None:
                raise
            # The user qualifies but none of ours may vouch: a resident who can (as Synapse).
            servers = await self.restricted.authorising_servers(room_id, version)
            if not servers:
                raise
            event_id = await self.remote.join_through_resident(user_id, room_id, servers, content)
            await self._joined(current, user_id, room_id)
            return event_id
        if authoriser is not None:
            content[AUTHORISER_KEY] = authoriser
        try:
            event = await self._send(room, user_id, user_id, content)
        except Forbidden as e:
            if e.message.startswith("join: join rule"):
                raise Forbidden("You are not invited to this room.") from None
            raise
        await self._joined(current, user_id, room_id)
        return event.event_id

    async def join_local_many(
        self, room_id: str, user_ids: Sequence[str], *, in_txn: BatchJoinHook | None = None
    ) -> BatchJoins:
        """Join many of our users to a room we are in, each as :meth:`join` with no reason
        would (the admin block, the rate limit, bans, restricted allow rules; the auth rules
        on each event, built on the state the joins before it left), the events persisted and
        queued for the other servers in ONE transaction, in which ``in_txn`` runs too with the
        users now joined (a refused user does not stop the others). A user this path cannot
        decide (a room we are not in; a restricted join only another server can vouch for) is
        left in ``one_by_one``: the caller joins them with :meth:`join`."""
        result = BatchJoins()
        users = list(dict.fromkeys(user_ids))
        try:
            await self._refuse_blocked(room_id)
        except MatrixError as e:
            result.refused.update(dict.fromkeys(users, e))
            return result
        room = await self.store.rooms.get_room(room_id)
        if room is None or not await self._server_in_room(room_id):
            result.one_by_one.extend(users)
            return result
        version = get_room_version(room.room_version)
        current = await self._current_members(room_id, users)
        restricted = await self._is_restricted(room_id, version)
        profiles = await self._profile_contents(users)
        drafts: list[EventDraft] = []
        befores: dict[str, Event | None] = {}
        for user_id, profile in zip(users, profiles, strict=True):
            before = current.get(user_id)
            content: dict[str, Any] = {"membership": "join", **profile}
            try:
                if before is not None and before.membership == "join":
                    if _repeats(before, content, profile=True):
                        result.joined[user_id] = before.event_id
                        continue
                else:
                    await self.ratelimiters.joins_local.check(user_id)
                if before is not None and before.membership == "ban":
                    raise Forbidden("You are banned from this room")
                if restricted:
                    authoriser = await self.restricted.authoriser_for(room_id, version, user_id)
                    if authoriser is not None:
                        content[AUTHORISER_KEY] = authoriser
            except MatrixError as e:
                if e.errcode == UNABLE_TO_GRANT_JOIN and self.remote is not None:
                    result.one_by_one.append(user_id)  # a resident of another server may vouch
                else:
                    result.refused[user_id] = e
                continue
            befores[user_id] = before
            drafts.append(EventDraft("m.room.member", user_id, content, state_key=user_id))
        if not drafts and not result.joined:
            return result
        sent = await self.store.db.run_in_transaction(
            "join_local_many", self._join_many_txn, room, drafts, dict(result.joined), in_txn
        )
        result.joined.update(sent.joined)
        result.refused.update(sent.refused)
        new = [u for u in sent.joined if (b := befores[u]) is None or b.membership != "join"]
        if new and self.on_joined_many is not None:
            await self.on_joined_many(new, room_id)
        elif self.on_joined is not None:
            for user_id in new:
                await self.on_joined(user_id, room_id)
        return result

    async def _join_many_txn(
        self,
        txn: Transaction,
        room: RoomRecord,
        drafts: Sequence[EventDraft],
        already: dict[str, str],
        in_txn: BatchJoinHook | None,
    ) -> BatchJoins:
        sent = BatchJoins()
        outcomes = await self.sender.send_each_txn(txn, room, drafts) if drafts else []
        for draft, outcome in zip(drafts, outcomes, strict=True):
            user_id = draft.sender
            if isinstance(outcome, Event):
                sent.joined[user_id] = outcome.event_id
                continue
            try:
                with client_event_errors():
                    raise outcome
            except Forbidden as e:
                # The message a single join answers (the join rule refused an uninvited user).
                refused = (
                    Forbidden("You are not invited to this room.")
                    if e.message.startswith("join: join rule")
                    else e
                )
                sent.refused[user_id] = refused
            except MatrixError as e:
                sent.refused[user_id] = e
        if sent.joined:
            # Coming back un-forgets the room (as a single join does).
            await self.store.room_use.unforget_many_txn(txn, list(sent.joined), room.room_id)
        if in_txn is not None:
            await in_txn(txn, [*already, *sent.joined])
        return sent

    async def _current_members(self, room_id: str, users: Sequence[str]) -> dict[str, Event]:
        """The current ``m.room.member`` event of each of ``users`` that has one (two reads)."""
        state = await self.store.state.get_current_state_ids(room_id)
        ids = {u: state[("m.room.member", u)] for u in users if ("m.room.member", u) in state}
        events = await self.store.events.get_events(ids.values())
        return {u: events[eid] for u, eid in ids.items() if eid in events}

    async def _is_restricted(self, room_id: str, version: RoomVersion) -> bool:
        join_rules = await self.store.state.get_current_state_event(room_id, "m.room.join_rules")
        rule = None if join_rules is None else join_rules.content.get("join_rule")
        return is_restricted(version, rule)

    async def _joined(self, before: Event | None, user_id: str, room_id: str) -> None:
        """A new join (not a profile change of a member): what follows a join."""
        if self.on_joined is not None and (before is None or before.membership != "join"):
            await self.on_joined(user_id, room_id)

    # --- knock -------------------------------------------------------------------------------
    async def knock(
        self,
        user_id: str,
        room_id_or_alias: str,
        *,
        reason: str | None = None,
        servers: Sequence[str] = (),
    ) -> str:
        """Ask to be invited into a room (``knock`` / ``knock_restricted`` join rules); one
        this server is not in is knocked on through another (make_knock/send_knock). Returns
        the room ID."""
        if self._suspended(user_id):
            raise suspended_error("Knocking on rooms")
        room_id, alias_servers = await self.resolve_room(room_id_or_alias)
        content = _content("knock", reason)
        await self._knock(user_id, room_id, content, [*servers], alias_servers)
        return room_id

    async def _knock(
        self,
        user_id: str,
        room_id: str,
        content: dict[str, Any],
        servers: Sequence[str] = (),
        alias_servers: Sequence[str] = (),
    ) -> str:
        await self._refuse_blocked(room_id)
        room = await self.store.rooms.get_room(room_id)
        if room is None or not await self._server_in_room(room_id):
            remote_servers = candidate_servers(
                [*servers, *alias_servers], room_id, self.server_name
            )
            if self.remote is None or not remote_servers:
                raise NotFound(NO_KNOWN_SERVERS)
            await self.ratelimiters.joins_remote.check(user_id)
            return await self.remote.knock(user_id, room_id, remote_servers, content)
        current = await get_membership(self.store, room_id, user_id)
        if current is not None and current.membership == "ban":
            raise Forbidden("You are banned from this room")
        if current is not None and current.membership in ("join", "invite"):
            raise Forbidden(f"You are already {_JOINED_OR_INVITED[current.membership]}")
        if current is not None and current.membership == "knock" and current.content == content:
            return current.event_id  # the same knock again: no new event (as Synapse)
        join_rules = await self.store.state.get_current_state_event(room_id, "m.room.join_rules")
        rule = None if join_rules is None else join_rules.content.get("join_rule")
        if not allows_knock(get_room_version(room.room_version), rule):
            raise Forbidden("You are not allowed to knock on this room")
        return (await self._send(room, user_id, user_id, content)).event_id

    # --- the state PUT -------------------------------------------------------------------------
    async def set_membership(
        self, user_id: str, room_id: str, target: str, content: dict[str, Any]
    ) -> str:
        """``PUT /rooms/{roomId}/state/m.room.member/{target}``: the change the content's
        ``membership`` names, through the same checks as the dedicated endpoints (as Synapse
        routes it); returns the event ID."""
        reason = room_id_error(room_id)
        if reason:
            raise BadRequest(reason, Codes.INVALID_PARAM)
        if user_id_error(target, historical=True):
            raise BadRequest(f"Invalid user ID {target!r}", Codes.INVALID_PARAM)
        membership = content.get("membership")
        if not isinstance(membership, str):
            raise BadRequest("Invalid membership (must be a string)", Codes.BAD_JSON)
        content = dict(content)
        # Only the server names an authoriser, and only for a join it vouches for.
        content.pop(AUTHORISER_KEY, None)
        if membership in ("join", "knock") and target != user_id:
            raise Forbidden(f"You cannot {membership} on behalf of another user")
        if membership == "join":
            return await self._join(user_id, room_id, content, [], [], profile=False)
        if membership == "knock":
            return await self._knock(user_id, room_id, content)
        if membership == "invite":
            return await self._invite(user_id, room_id, target, content)
        if membership == "ban":
            return await self._ban(user_id, room_id, target, content)
        if membership != "leave":
            raise BadRequest(f"Unknown membership {membership!r}", Codes.BAD_JSON)
        if target == user_id:
            return await self._leave(user_id, room_id, content)
        current = await get_membership(self.store, room_id, target)
        if current is not None and current.membership == "ban":
            return await self._unban(user_id, room_id, target, content)
        return await self._kick(user_id, room_id, target, content)

    # --- leave and the moderator actions ---------------------------------------------------
    async def leave(self, user_id: str, room_id: str, *, reason: str | None = None) -> str:
        """Leave a room, or reject an invite / withdraw a knock."""
        return await self._leave(user_id, room_id, _content("leave", reason))

    async def _leave(self, user_id: str, room_id: str, content: dict[str, Any]) -> str:
        if self.remote is not None and await self._invited_out_of_band(user_id, room_id):
            await self.remote.reject_invite(user_id, room_id, content)
            row = await self.store.out_of_band.get(user_id, room_id)
            return "" if row is None else row.event_id
        room = await self._room(room_id)
        current = await get_membership(self.store, room_id, user_id)
        if current is None:
            raise Forbidden("You are not a member of this room")
        if current.membership == "leave":
            return current.event_id  # already left: nothing to do
        if current.membership == "ban":
            raise Forbidden("You are banned from this room")
        return (await self._send(room, user_id, user_id, content)).event_id

    async def invite(
        self,
        user_id: str,
        room_id: str,
        target: str,
        *,
        reason: str | None = None,
        is_direct: bool = False,
    ) -> str:
        content = _content("invite", reason)
        if is_direct:
            content["is_direct"] = True
        if domain_of(target) == self.server_name:
            content.update(await self._profile_content(target))
        return await self._invite(user_id, room_id, target, content)

    async def _invite(
        self, user_id: str, room_id: str, target: str, content: dict[str, Any]
    ) -> str:
        if self._suspended(user_id):
            raise suspended_error("Sending invites")
        # Both invite routes (/invite and the member state PUT) spend rc_invites tokens.
        await self.ratelimiters.invites.check(user_id, room_id, target)
        if self._shadow_banned(user_id):
            return fake_event_id()
        room = await self._room(room_id)
        await self._refuse_blocked(room_id)
        current = await get_membership(self.store, room_id, target)
        if current is not None and current.membership == "join":
            raise Forbidden(f"{target} is already in the room.")
        if current is not None and current.membership == "ban":
            raise Forbidden(f"{target} is banned from the room")
        return (await self._send(room, user_id, target, content)).event_id

    async def kick(
        self, user_id: str, room_id: str, target: str, *, reason: str | None = None
    ) -> str:
        return await self._kick(user_id, room_id, target, _content("leave", reason))

    async def _kick(self, user_id: str, room_id: str, target: str, content: dict[str, Any]) -> str:
        room = await self._room(room_id)
        current = await get_membership(self.store, room_id, target)
        if current is None or current.membership not in ("join", "invite", "knock"):
            raise Forbidden("The target user is not in the room")
        return (await self._send(room, user_id, target, content)).event_id

    async def ban(
        self, user_id: str, room_id: str, target: str, *, reason: str | None = None
    ) -> str:
        return await self._ban(user_id, room_id, target, _content("ban", reason))

    async def _ban(self, user_id: str, room_id: str, target: str, content: dict[str, Any]) -> str:
        room = await self._room(room_id)
        return (await self._send(room, user_id, target, content)).event_id

    async def unban(
        self, user_id: str, room_id: str, target: str, *, reason: str | None = None
    ) -> str:
        return await self._unban(user_id, room_id, target, _content("leave", reason))

    async def _unban(self, user_id: str, room_id: str, target: str, content: dict[str, Any]) -> str:
        room = await self._room(room_id)
        current = await get_membership(self.store, room_id, target)
        if current is None or current.membership != "ban":
            raise Forbidden("The target user is not banned from the room")
        return (await self._send(room, user_id, target, content)).event_id

    # --- forget ----------------------------------------------------------------------------
    async def forget(self, user_id: str, room_id: str, now_ms: int) -> None:
        """Forget a room the user has left (hidden from /sync until they come back)."""
        await self._room(room_id)
        current = await get_membership(self.store, room_id, user_id)
        if current is None:
            return  # never a member: nothing to forget (as Synapse)
        if current.membership not in ("leave", "ban"):
            raise BadRequest(f"User {user_id} is in room {room_id}", Codes.UNKNOWN)
        await self.store.room_use.forget(user_id, room_id, now_ms)

    # --- rooms this server is not in --------------------------------------------------------
    async def _server_in_room(self, room_id: str) -> bool:
        return await self.store.state.is_host_joined(room_id, self.server_name)

    async def _invited_out_of_band(self, user_id: str, room_id: str) -> bool:
        """Whether the user's membership is an invite received over federation (or a knock
        sent through another server) in a room none of our users is in."""
        row = await self.store.out_of_band.get(user_id, room_id)
        if row is None or row.membership not in ("invite", "knock"):
            return False
        return not await self._server_in_room(room_id)

    async def _remote_servers(
        self,
        user_id: str,
        room: RoomRecord | None,
        room_id: str,
        given: Sequence[str],
        alias_servers: Sequence[str],
    ) -> list[str] | None:
        """The servers to join through when the join must go through another server; None
        when it is a local join (we are in the room, or nobody else could host it)."""
        if self.remote is None:
            return None
        if room is not None and await self._server_in_room(room_id):
            return None
        invite = await self.store.out_of_band.get(user_id, room_id)
        inviter_server = None
        if invite is not None and invite.membership == "invite":
            event = await self.store.events.get_event(invite.event_id)
            inviter_server = None if event is None else domain_of(event.sender)
        servers = candidate_servers(
            [*given, *alias_servers], room_id, self.server_name, inviter_server
        )
        if not servers:
            return None  # a local room everyone left: the local path decides (as before)
        return servers

    # --- helpers ---------------------------------------------------------------------------
    async def _refuse_blocked(self, room_id: str) -> None:
        """An admin blocked the room (admin room deletion with ``block``): no joins, no
        invites (as Synapse)."""
        if await self.store.room_deletions.is_blocked(room_id):
            raise Forbidden("This room has been blocked on this server")

    async def _room(self, room_id: str) -> RoomRecord:
        reason = room_id_error(room_id)
        if reason:
            raise BadRequest(reason, Codes.INVALID_PARAM)
        room = await self.store.rooms.get_room(room_id)
        if room is None:
            raise NotFound("Unknown room")
        return room

    async def _send(
        self, room: RoomRecord, sender: str, target: str, content: dict[str, Any]
    ) -> Event:
        draft = EventDraft("m.room.member", sender, content, state_key=target)
        with client_event_errors():
            return await self.store.db.run_in_transaction(
                "send_membership", self._send_txn, room, draft
            )

    async def _send_txn(self, txn: Transaction, room: RoomRecord, draft: EventDraft) -> Event:
        (event,) = await self.sender.send_txn(txn, room, [draft])
        if draft.content.get("membership") in ("join", "invite") and draft.state_key:
            # Coming back (or being invited back) un-forgets the room, as in Synapse.
            await self.store.room_use.unforget_txn(txn, draft.state_key, room.room_id)
        return event

    async def _profile_contents(self, users: Sequence[str]) -> list[dict[str, str]]:
        """:meth:`_profile_content` of each of ``users`` (one read with ``profiles_many``)."""
        if self._profiles_many is None:
            return list(await asyncio.gather(*(self._profile_content(u) for u in users)))
        try:
            found = await self._profiles_many(users)
        except (MatrixError, AuthError):
            found = {}
        return [dict(found.get(u, {})) for u in users]

    async def _profile_content(self, user_id: str) -> dict[str, str]:
        """``displayname`` / ``avatar_url`` from the user's global profile, when known."""
        try:
            return dict(await self._profiles(user_id))
        except (MatrixError, AuthError):
            return {}


@dataclass(slots=True)
class BatchJoins:
    """What :meth:`MembershipService.join_local_many` did for each user."""

    #: user → their member event (new, or the join they already had).
    joined: dict[str, str] = field(default_factory=dict)
    #: user → the error :meth:`MembershipService.join` would have raised.
    refused: dict[str, MatrixError] = field(default_factory=dict)
    #: users to join one at a time (:meth:`MembershipService.join`).
    one_by_one: list[str] = field(default_factory=list)


def _content(membership: str, reason: str | None) -> dict[str, Any]:
    content: dict[str, Any] = {"membership": membership}
    if reason is not None:
        content["reason"] = reason
    return content


def _repeats(current: Event, content: dict[str, Any], *, profile: bool) -> bool:
    """Whether a join of a joined member would change nothing: the same content for a
    client's own content; the same profile and no reason for one made from the profile."""
    if not profile:
        return {k: v for k, v in current.content.items() if k != AUTHORISER_KEY} == content
    if "reason" in content:
        return False
    return all(
        current.content.get(key) == content.get(key) for key in ("displayname", "avatar_url")
    )
