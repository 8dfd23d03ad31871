"""The admin API's federation destinations: the backoff the sender keeps for each remote
server, and resetting it (``reset_connection``) so the sender tries again at once."""

from __future__ import annotations

from typing import Any

from homeserver.errors import BadRequest, Codes, NotFound
from homeserver.federation.retry import healthy
from homeserver.federation.sender import FederationSender
from homeserver.storage import Store
from homeserver.storage.admin_destinations import DestinationRow


def destination_json(row: DestinationRow) -> dict[str, Any]:
    """Synapse's keys. We do not track the last PDU a destination acknowledged, so
    ``last_successful_stream_ordering`` is null."""
    return {
        "destination": row.destination,
        "retry_last_ts": row.retry_last_ts,
        "retry_interval": row.retry_interval_ms,
        "failure_ts": row.failure_ts,
        "last_successful_stream_ordering": None,
    }


class AdminDestinations:
    def __init__(self, store: Store, sender: FederationSender) -> None:
        self.store = store
        self.sender = sender

    async def list_destinations(
        self,
        start: int,
        limit: int,
        *,
        order_by: str,
        backwards: bool,
        name: str | None,
    ) -> dict[str, Any]:
        rows, total = await self.store.admin_destinations.list_destinations(
            start, limit, order_by=order_by, backwards=backwards, name=name
        )
        body: dict[str, Any] = {
            "destinations": [destination_json(r) for r in rows],
            "total": total,
        }
        if start + limit < total:
            body["next_token"] = str(start + len(rows))
        return body

    async def _row(self, destination: str) -> DestinationRow:
        row = await self.store.admin_destinations.get_destination(destination)
        if row is None:
            raise NotFound("Unknown destination")
        return row

    async def get_destination(self, destination: str) -> dict[str, Any]:
        return destination_json(await self._row(destination))

    async def reset_connection(self, destination: str) -> dict[str, Any]:
        """Forget the destination's backoff and wake its queue (as Synapse, 400 when there is
        no backoff to reset)."""
        row = await self._row(destination)
        if not row.retry_last_ts:
            raise BadRequest(
                "The retry timing does not need to be reset for this destination.", Codes.UNKNOWN
            )
        await self.store.outbox.set_retry_state(healthy(destination))
        # A task waiting out the backoff stops waiting; an idle destination gets a task if
        # something is queued for it.
        self.sender.on_destination_reachable(destination)
        self.sender.wake([destination])
        return {}
