"""The end-to-end encryption parts of a /sync response: ``to_device``, ``device_lists``,
``device_one_time_keys_count`` and ``device_unused_fallback_key_types``.

To-device messages are delivered at least once and deleted exactly when the device proves it
received them: a sync whose ``since`` is past a message acknowledges it (the response carrying
it arrived, since its ``next_batch`` came back). A sync whose response is lost is answered
again with the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeserver.e2e.device_list_summary import changed_and_left
from homeserver.storage import Store
from homeserver.streams.tokens import StreamToken

#: At most this many to-device messages per response (Synapse's number); the rest come with
#: the next sync, which the client makes at once since the response was not empty.
TO_DEVICE_LIMIT = 100
#: Clients upload more one-time keys when this count runs low; it is always reported.
SIGNED_CURVE25519 = "signed_curve25519"


@dataclass(frozen=True, slots=True)
class E2ESections:
    to_device: list[dict[str, Any]]
    #: the to_device position ``next_batch`` carries: the last delivered message's when the
    #: limit cut the list short, else the sync's position.
    to_device_upto: int
    changed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    one_time_keys_count: dict[str, int] = field(default_factory=dict)
    unused_fallback_key_types: list[str] = field(default_factory=list)

    @property
    def has_news(self) -> bool:
        """Whether a long-poll should return for these (key counts alone do not count)."""
        return bool(self.to_device or self.changed or self.left)

    def apply(self, response: dict[str, Any]) -> None:
        response["to_device"] = {"events": self.to_device}
        response["device_lists"] = {"changed": self.changed, "left": self.left}
        response["device_one_time_keys_count"] = self.one_time_keys_count
        response["device_unused_fallback_key_types"] = self.unused_fallback_key_types


async def acknowledge_to_device(
    store: Store, user_id: str, device_id: str | None, since: StreamToken | None
) -> None:
    """Delete the device's messages at or below ``since`` (it has received them). A read
    first: most syncs have nothing to delete and need no write transaction."""
    if device_id is None or since is None or since.to_device <= 0:
        return
    upto = min(since.to_device, await store.device_inbox.get_position())
    if await store.device_inbox.get_messages(user_id, device_id, 0, upto, 1):
        await store.device_inbox.delete_messages_upto(user_id, device_id, upto)


async def e2e_sections(
    store: Store,
    user_id: str,
    device_id: str | None,
    since: StreamToken | None,
    now: StreamToken,
) -> E2ESections:
    to_device: list[dict[str, Any]] = []
    to_device_upto = now.to_device
    one_time_keys: dict[str, int] = {}
    fallback_types: list[str] = []
    if device_id is not None:
        after = 0 if since is None else since.to_device
        rows = await store.device_inbox.get_messages(
            user_id, device_id, after, now.to_device, TO_DEVICE_LIMIT
        )
        to_device = [message for _, message in rows]
        if len(rows) >= TO_DEVICE_LIMIT:
            to_device_upto = rows[-1][0]
        one_time_keys = await store.e2e_keys.count_one_time_keys(user_id, device_id)
        fallback_types = await store.e2e_keys.get_unused_fallback_key_types(user_id, device_id)
    one_time_keys.setdefault(SIGNED_CURVE25519, 0)
    changed: set[str] = set()
    left: set[str] = set()
    if since is not None:
        # Only incremental syncs carry device-list changes (an initial sync fetches all keys).
        changed, left = await changed_and_left(store, user_id, since, now)
    return E2ESections(
        to_device=to_device,
        to_device_upto=to_device_upto,
        changed=sorted(changed),
        left=sorted(left),
        one_time_keys_count=one_time_keys,
        unused_fallback_key_types=fallback_types,
    )
