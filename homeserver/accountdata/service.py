"""Account data and room tags, as ``/user/{userId}/account_data`` and ``.../tags`` serve them.

Only the owner may read or write their data (403 otherwise, Synapse's messages). Tags are the
``m.tag`` room account data (``{"tags": {name: {"order": n}}}``). ``m.fully_read`` and
``m.push_rules`` have their own APIs and are refused here, as Synapse does. Every write moves
the account_data stream and wakes the owner's /sync.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError, NotFound
from homeserver.push.rules import PushRulesService
from homeserver.storage import Store
from homeserver.storage.account_data import GLOBAL
from homeserver.streams.notifier import Notifier

TAG_TYPE = "m.tag"
FULLY_READ_TYPE = "m.fully_read"
PUSH_RULES_TYPE = "m.push_rules"
#: Longest account data type / tag name we keep (Synapse stores them in indexed columns).
MAX_NAME_LENGTH = 255


def check_room_id(room_id: str) -> None:
    if not room_id.startswith("!") or len(room_id) < 2:
        raise BadRequest(f"{room_id} is not a valid room ID", Codes.INVALID_PARAM)


def _check_settable(data_type: str) -> None:
    if data_type == FULLY_READ_TYPE:
        raise MatrixError(
            HTTPStatus.METHOD_NOT_ALLOWED,
            Codes.BAD_JSON,
            "Cannot set m.fully_read through this API. Use /rooms/!roomId:server.name/read_markers",
        )
    if data_type == PUSH_RULES_TYPE:
        raise MatrixError(
            HTTPStatus.METHOD_NOT_ALLOWED,
            Codes.BAD_JSON,
            "Cannot set m.push_rules through this API. Use /pushrules",
        )
    if not data_type or len(data_type) > MAX_NAME_LENGTH:
        raise BadRequest("Invalid account data type", Codes.INVALID_PARAM)


class AccountDataService:
    def __init__(self, store: Store, notifier: Notifier, push_rules: PushRulesService) -> None:
        self.store = store
        self.notifier = notifier
        self.push_rules = push_rules

    @staticmethod
    def _own(requester_id: str, user_id: str, what: str) -> None:
        if requester_id != user_id:
            raise Forbidden(f"Cannot {what} for other users.")

    # --- account data ------------------------------------------------------------------
    async def get(
        self, requester_id: str, user_id: str, data_type: str, room_id: str = GLOBAL
    ) -> dict[str, Any]:
        self._own(requester_id, user_id, "get account data")
        if room_id != GLOBAL:
            check_room_id(room_id)
        if data_type == PUSH_RULES_TYPE:
            # Push rules live in their own table; per-room push rules do not exist.
            if room_id != GLOBAL:
                return {}
            return await self.push_rules.get_push_rules_content(user_id)
        content = await self.store.account_data.get_account_data(user_id, room_id, data_type)
        if content is None:
            raise NotFound("Room account data not found" if room_id else "Account data not found")
        return content

    async def put(
        self,
        requester_id: str,
        user_id: str,
        data_type: str,
        content: dict[str, Any],
        room_id: str = GLOBAL,
    ) -> None:
        self._own(requester_id, user_id, "add account data")
        if room_id != GLOBAL:
            check_room_id(room_id)
        _check_settable(data_type)
        await self.store.account_data.set_account_data(user_id, room_id, data_type, content)
        self.notifier.notify(user_ids=[user_id])

    # --- tags --------------------------------------------------------------------------
    async def get_tags(self, requester_id: str, user_id: str, room_id: str) -> dict[str, Any]:
        self._own(requester_id, user_id, "get tags")
        content = await self.store.account_data.get_account_data(user_id, room_id, TAG_TYPE)
        tags = (content or {}).get("tags")
        return {"tags": tags if isinstance(tags, dict) else {}}

    async def put_tag(
        self, requester_id: str, user_id: str, room_id: str, tag: str, body: dict[str, Any]
    ) -> None:
        self._own(requester_id, user_id, "add tags")
        check_room_id(room_id)
        if not tag or len(tag) > MAX_NAME_LENGTH:
            raise BadRequest("Invalid tag name", Codes.INVALID_PARAM)
        order = body.get("order")
        if "order" in body and (isinstance(order, bool) or not isinstance(order, int | float)):
            raise BadRequest("'order' must be a number", Codes.BAD_JSON)

        def add(old: dict[str, Any] | None) -> dict[str, Any]:
            tags = dict((old or {}).get("tags") or {})
            tags[tag] = body
            return {"tags": tags}

        await self.store.account_data.update_account_data(user_id, room_id, TAG_TYPE, add)
        self.notifier.notify(user_ids=[user_id])

    async def delete_tag(self, requester_id: str, user_id: str, room_id: str, tag: str) -> None:
        self._own(requester_id, user_id, "remove tags")
        check_room_id(room_id)

        def remove(old: dict[str, Any] | None) -> dict[str, Any]:
            tags = dict((old or {}).get("tags") or {})
            tags.pop(tag, None)
            return {"tags": tags}

        await self.store.account_data.update_account_data(user_id, room_id, TAG_TYPE, remove)
        self.notifier.notify(user_ids=[user_id])
