"""Federation queries we ask of other servers (spec: server-server API "Querying for
information"): resolving another server's alias and reading another server's user's profile,
each asked only of the server the identifier names. What others ask of us is in :mod:`queries`.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.errors import Codes, MatrixError, NotFound
from homeserver.federation.client import FederationClient, FederationError, FederationHttpError
from homeserver.storage.profiles import PROFILE_FIELDS
from homeserver.types import domain_of, room_id_error

logger = logging.getLogger(__name__)

QUERY_DIRECTORY = "/_matrix/federation/v1/query/directory"
QUERY_PROFILE = "/_matrix/federation/v1/query/profile"


def _remote_failure(server: str, e: FederationError) -> MatrixError:
    """A client-facing error for a failed query to ``server``: its 404 stays a 404."""
    if isinstance(e, FederationHttpError) and e.status == 404:
        return NotFound(e.error or "Not found")
    logger.info("query to %s failed: %s", server, e)
    return MatrixError(502, Codes.UNKNOWN, f"Failed to query {server}")


class RemoteQueries:
    def __init__(self, client: FederationClient) -> None:
        self.client = client

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
