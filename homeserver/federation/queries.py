"""Federation queries other servers ask us (spec: server-server API "Querying for information",
"Device Management", "End-to-End Encryption"; §10 of federation-minimum.md).

``query/directory`` (our aliases), ``query/profile`` (our users); the end-to-end key endpoints
(``user/devices``, ``user/keys/query``, ``user/keys/claim``) are answered by :mod:`e2e_queries`
(``FederationQueries.e2e``). The queries we ask of others are in :mod:`remote_queries`.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.federation.e2e_queries import E2EQueries
from homeserver.rooms.aliases import AliasService
from homeserver.storage import Store
from homeserver.storage.profiles import PROFILE_FIELDS
from homeserver.types import domain_of, room_alias_error, user_id_error


class FederationQueries:
    def __init__(self, *, store: Store, aliases: AliasService, server_name: str) -> None:
        self.store = store
        self.aliases = aliases
        self.server_name = server_name
        self.e2e = E2EQueries(store=store, server_name=server_name)

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
