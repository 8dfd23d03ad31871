"""Federation queries, both ways (spec: server-server API "Querying for information", "Device
Management", "End-to-End Encryption"; §10 of federation-minimum.md).

Served: ``query/directory`` (our aliases), ``query/profile`` (our users); the end-to-end key
endpoints (``user/devices``, ``user/keys/query``, ``user/keys/claim``) are answered by
:mod:`e2e_queries` (``FederationQueries.e2e``). Used: resolving another server's alias and
reading another server's user's profile, each asked only of the server the identifier names.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.errors import BadRequest, Codes, MatrixError, NotFound
from homeserver.federation.client import FederationClient, FederationError, FederationHttpError
from homeserver.federation.e2e_queries import E2EQueries
from homeserver.rooms.aliases import AliasService
from homeserver.storage import Store
from homeserver.types import domain_of, room_alias_error, room_id_error, user_id_error

logger = logging.getLogger(__name__)

PROFILE_FIELDS = ("displayname", "avatar_url")
QUERY_DIRECTORY = "/_matrix/federation/v1/query/directory"
QUERY_PROFILE = "/_matrix/federation/v1/query/profile"


def _remote_failure(server: str, e: FederationError) -> MatrixError:
    """A client-facing error for a failed query to ``server``: its 404 stays a 404."""
    if isinstance(e, FederationHttpError) and e.status == 404:
        return NotFound(e.error or "Not found")
    logger.info("query to %s failed: %s", server, e)
    return MatrixError(502, Codes.UNKNOWN, f"Failed to query {server}")


class FederationQueries:
    def __init__(
        self, *, store: Store, aliases: AliasService, client: FederationClient, server_name: str
    ) -> None:
        self.store = store
        self.aliases = aliases
        self.client = client
        self.server_name = server_name
        self.e2e = E2EQueries(store=store, server_name=server_name)

    # --- served --------------------------------------------------------------------------------
    async def directory(self, room_alias: str | None) -> dict[str, Any]:
        if room_alias is None:
            raise BadRequest("Missing room_alias", Codes.MISSING_PARAM)
        if room_alias_error(room_alias):
            raise BadRequest("Invalid room alias", Codes.INVALID_PARAM)
        if domain_of(room_alias) != self.server_name:
            raise NotFound("Room alias not found")  # we only answer for our own aliases
        return await self.aliases.resolve(room_alias)

    async def profile(self, user_id: str | None, field: str | None) -> dict[str, Any]:
        if user_id is None:
            raise BadRequest("Missing user_id", Codes.MISSING_PARAM)
        if user_id_error(user_id, historical=True):
            raise BadRequest("Invalid user ID", Codes.INVALID_PARAM)
        if domain_of(user_id) != self.server_name:
            raise BadRequest("User is not hosted on this homeserver", Codes.INVALID_PARAM)
        if await self.store.users.get_user(user_id) is None:
            raise NotFound("Profile was not found")
        if field is not None and field not in PROFILE_FIELDS:
            raise NotFound("The requested profile field does not exist")
        profile = (await self.store.profiles.get_profile(user_id)).to_json()
        if field is not None:
            # As Synapse: the asked field, null when unset.
            return {field: profile.get(field)}
        return profile

    # --- used ----------------------------------------------------------------------------------
    async def resolve_remote_alias(self, room_alias: str) -> dict[str, Any]:
        """``{room_id, servers}`` for another server's alias, from that server."""
        server = domain_of(room_alias)
        try:
            answer = await self.client.get_json(server, QUERY_DIRECTORY, {"room_alias": room_alias})
        except FederationError as e:
            if isinstance(e, FederationHttpError) and e.status == 404:
                raise NotFound(f"Room alias {room_alias} not found") from None
            raise _remote_failure(server, e) from None
        room_id = answer.get("room_id") if isinstance(answer, dict) else None
        servers = answer.get("servers") if isinstance(answer, dict) else None
        if not isinstance(room_id, str) or room_id_error(room_id):
            raise MatrixError(502, Codes.UNKNOWN, f"{server} gave an invalid answer")
        if not isinstance(servers, list):
            servers = []
        good = [s for s in servers if isinstance(s, str) and s]
        return {"room_id": room_id, "servers": good or [server]}

    async def remote_profile(self, user_id: str) -> dict[str, str]:
        """``displayname`` / ``avatar_url`` of another server's user, from that server."""
        server = domain_of(user_id)
        try:
            answer = await self.client.get_json(server, QUERY_PROFILE, {"user_id": user_id})
        except FederationError as e:
            # Unreachable or refusing: as far as the client can tell there is no profile (a
            # profile lookup is advisory; clients fall back to the user ID).
            logger.info("profile query for %s to %s failed: %s", user_id, server, e)
            raise NotFound("Profile was not found") from None
        if not isinstance(answer, dict):
            return {}
        return {k: answer[k] for k in PROFILE_FIELDS if isinstance(answer.get(k), str)}
