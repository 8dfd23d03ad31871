"""``POST /user_directory/search``: find users by a prefix of any word of their display name
or user ID, among those the searcher may see (``homeserver/storage/user_directory.py`` says who
and keeps the directory in step with rooms and profiles)."""

from __future__ import annotations

from typing import Any

from homeserver.config.user_directory import UserDirectoryConfig
from homeserver.errors import BadRequest, Codes
from homeserver.storage import Store
from homeserver.storage.user_directory import (
    MAX_DISPLAYNAME_LENGTH,
    DirectorySearch,
    words,
)

DEFAULT_LIMIT = 10
#: Synapse clamps ``limit`` to 0..50.
MAX_LIMIT = 50
#: Words a search term may have; each costs a LIKE over the directory.
MAX_WORDS = 32


def parse_search_body(body: dict[str, Any]) -> tuple[str, int]:
    """``search_term`` and ``limit`` of a request body."""
    if "search_term" not in body:
        raise BadRequest("`search_term` is a required field", Codes.MISSING_PARAM)
    term = body["search_term"]
    if not isinstance(term, str):
        raise BadRequest("`search_term` must be a string", Codes.INVALID_PARAM)
    limit = body.get("limit", DEFAULT_LIMIT)
    # bool is an int in Python, never a count in JSON.
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise BadRequest("`limit` must be an integer", Codes.INVALID_PARAM)
    return term, max(0, min(limit, MAX_LIMIT))


class UserDirectoryService:
    def __init__(self, store: Store, config: UserDirectoryConfig) -> None:
        self._store = store
        self._config = config

    async def search(self, searcher: str, term: str, limit: int) -> dict[str, Any]:
        """The response body: ``results`` (best first) and ``limited``."""
        terms = list(dict.fromkeys(words(term)))
        if not self._config.enabled or not terms or limit == 0:
            return {"limited": False, "results": []}
        if len(terms) > MAX_WORDS:
            raise BadRequest(f"`search_term` has more than {MAX_WORDS} words", Codes.INVALID_PARAM)
        if any(len(t) > MAX_DISPLAYNAME_LENGTH for t in terms):
            # Longer than any display name or user ID: it prefixes no word of anyone's.
            return {"limited": False, "results": []}
        entries, limited = await self._store.user_directory.search(
            DirectorySearch(
                searcher=searcher,
                terms=terms,
                limit=limit,
                search_all_users=self._config.search_all_users,
                prefer_local_users=self._config.prefer_local_users,
                exclude_remote_users=self._config.exclude_remote_users,
            )
        )
        return {"limited": limited, "results": [e.to_json() for e in entries]}
