"""Reports of abuse: users report an event, a room or a user (client API, spec v1.13/v1.14);
server admins list, read and delete them (Synapse's ``/_synapse/admin/v1/event_reports`` and
``/user_reports``).

As Synapse: an event may be reported only by a user who can see it (else 404, not told apart
from an unknown event); a room only if we know it; a report of a user who is not ours, or does
not exist, is accepted and dropped (their existence is not revealed).
"""

from __future__ import annotations

from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, MatrixError, NotFound
from homeserver.storage import Store
from homeserver.storage.reports import EventReport, UserReport
from homeserver.types import domain_of, event_id_error, room_id_error, user_id_error
from homeserver.visibility.client import check_read_access, filter_events_for_client

#: Synapse's cap on a user report's reason; the same bound keeps every report small.
MAX_REASON = 1000
UNREPORTABLE = "Unable to report event: it does not exist or you aren't able to see it."


def parse_event_report(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(reason, the content to keep) from a ``/report/{eventId}`` body: ``reason`` a string,
    ``score`` an integer (not a bool), both optional."""
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadRequest("Param 'reason' must be a string", Codes.BAD_JSON)
    score = body.get("score")
    if score is not None and (type(score) is not int or not -(2**53) < score < 2**53):
        raise BadRequest("Param 'score' must be an integer", Codes.BAD_JSON)
    _check_reason(reason)
    content: dict[str, Any] = {}
    if reason is not None:
        content["reason"] = reason
    if score is not None:
        content["score"] = score
    return reason, content


def parse_reason(body: dict[str, Any]) -> str:
    """The required ``reason`` of a room or user report."""
    reason = body.get("reason")
    if not isinstance(reason, str):
        raise BadRequest("Param 'reason' must be a string", Codes.BAD_JSON)
    _check_reason(reason)
    return reason


def _check_reason(reason: str | None) -> None:
    if reason is not None and (len(reason) > MAX_REASON or "\x00" in reason):
        raise BadRequest(f"Reason must be less than {MAX_REASON} characters", Codes.BAD_JSON)


def report_id_of(text: str) -> int:
    """A report id from the path: a non-negative integer (Synapse's message otherwise)."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise BadRequest(
            "The report_id parameter must be a string representing a positive integer.",
            Codes.INVALID_PARAM,
        )
    return int(text)


def user_report_json(report: UserReport) -> dict[str, Any]:
    return {
        "id": report.id,
        "received_ts": report.received_ts,
        "target_user_id": report.target_user_id,
        "user_id": report.user_id,
        "reason": report.reason,
    }


class ReportsService:
    def __init__(self, store: Store, server_name: str, clock: WallClock) -> None:
        self.store = store
        self.server_name = server_name
        self.clock = clock

    # --- reporting (client API) -------------------------------------------------------------
    async def report_event(
        self, user_id: str, room_id: str, event_id: str, body: dict[str, Any]
    ) -> None:
        reason, content = parse_event_report(body)
        if room_id_error(room_id) or event_id_error(event_id):
            raise NotFound(UNREPORTABLE)
        try:
            access = await check_read_access(self.store, room_id, user_id)
        except MatrixError as e:
            raise NotFound(UNREPORTABLE) from e
        event = await self.store.events.get_event(event_id)
        if (
            event is None
            or event.room_id != room_id
            or event.internal.outlier
            or event.rejected
            or event.internal.soft_failed
            or event.internal.redacted
            or not await filter_events_for_client(self.store, user_id, [event], access=access)
        ):
            raise NotFound(UNREPORTABLE)
        await self.store.reports.add_event_report(
            room_id=room_id,
            event_id=event_id,
            user_id=user_id,
            reason=reason,
            content=content,
            received_ts=self.clock(),
        )

    async def report_room(self, user_id: str, room_id: str, body: dict[str, Any]) -> None:
        reason = parse_reason(body)
        if room_id_error(room_id) or await self.store.rooms.get_room(room_id) is None:
            raise NotFound("Room does not exist")
        await self.store.reports.add_room_report(
            room_id=room_id, user_id=user_id, reason=reason, received_ts=self.clock()
        )

    async def report_user(self, user_id: str, target_user_id: str, body: dict[str, Any]) -> None:
        reason = parse_reason(body)
        if user_id_error(target_user_id, historical=True):
            raise BadRequest("Invalid user ID", Codes.INVALID_PARAM)
        if domain_of(target_user_id) != self.server_name:
            return  # not ours: nothing we can do, and not said
        if await self.store.users.get_user(target_user_id) is None:
            return  # hide that they do not exist
        await self.store.reports.add_user_report(
            target_user_id=target_user_id,
            user_id=user_id,
            reason=reason,
            received_ts=self.clock(),
        )

    # --- admin reads ------------------------------------------------------------------------
    async def _room_names(self, room_ids: set[str]) -> dict[str, tuple[str | None, str | None]]:
        """room → (name, canonical alias) from its current state."""
        found: dict[str, tuple[str | None, str | None]] = {}
        for room_id in room_ids:
            name = await self.store.state.get_current_state_event(room_id, "m.room.name")
            alias = await self.store.state.get_current_state_event(
                room_id, "m.room.canonical_alias"
            )
            name_value = name.content.get("name") if name is not None else None
            alias_value = alias.content.get("alias") if alias is not None else None
            found[room_id] = (
                name_value if isinstance(name_value, str) else None,
                alias_value if isinstance(alias_value, str) else None,
            )
        return found

    @staticmethod
    def _event_report_json(
        report: EventReport, names: dict[str, tuple[str | None, str | None]]
    ) -> dict[str, Any]:
        name, alias = names.get(report.room_id, (None, None))
        score = report.content.get("score")
        reason = report.content.get("reason")
        return {
            "id": report.id,
            "received_ts": report.received_ts,
            "room_id": report.room_id,
            "name": name,
            "event_id": report.event_id,
            "user_id": report.user_id,
            "reason": reason if isinstance(reason, str) else None,
            "score": score if type(score) is int else None,
            "sender": report.sender,
            "canonical_alias": alias,
        }

    async def list_event_reports(
        self,
        *,
        start: int,
        limit: int,
        backwards: bool,
        user_id: str | None,
        room_id: str | None,
        event_sender: str | None,
    ) -> dict[str, Any]:
        reports, total = await self.store.reports.list_event_reports(
            start=start,
            limit=limit,
            backwards=backwards,
            user_id=user_id,
            room_id=room_id,
            event_sender=event_sender,
        )
        names = await self._room_names({r.room_id for r in reports})
        body: dict[str, Any] = {
            "event_reports": [self._event_report_json(r, names) for r in reports],
            "total": total,
        }
        if start + limit < total:
            body["next_token"] = start + len(reports)
        return body

    async def get_event_report(self, report_id: int) -> dict[str, Any]:
        report = await self.store.reports.get_event_report(report_id)
        if report is None:
            raise NotFound("Event report not found")
        body = self._event_report_json(report, await self._room_names({report.room_id}))
        event = await self.store.events.get_event(report.event_id)
        body["event_json"] = event.federation_json() if event is not None else None
        return body

    async def delete_event_report(self, report_id: int) -> None:
        if not await self.store.reports.delete_event_report(report_id):
            raise NotFound("Event report not found")

    async def list_user_reports(
        self,
        *,
        start: int,
        limit: int,
        backwards: bool,
        user_id: str | None,
        target_user_id: str | None,
    ) -> dict[str, Any]:
        reports, total = await self.store.reports.list_user_reports(
            start=start,
            limit=limit,
            backwards=backwards,
            user_id=user_id,
            target_user_id=target_user_id,
        )
        body: dict[str, Any] = {
            "user_reports": [user_report_json(r) for r in reports],
            "total": total,
        }
        if start + limit < total:
            body["next_token"] = start + len(reports)
        return body

    async def get_user_report(self, report_id: int) -> dict[str, Any]:
        report = await self.store.reports.get_user_report(report_id)
        if report is None:
            raise NotFound("User report not found")
        return user_report_json(report)

    async def delete_user_report(self, report_id: int) -> None:
        if not await self.store.reports.delete_user_report(report_id):
            raise NotFound("User report not found")
