"""Parsing the bodies and parameters of /keys/query, /keys/claim and /keys/changes (pure)."""

from __future__ import annotations

from typing import Any

from homeserver.errors import BadRequest, Codes
from homeserver.types import user_id_error

#: Remote servers get this long to answer a query or claim unless the client asks otherwise
#: (Synapse's default); never longer than the maximum, nor shorter than the minimum (no server
#: answers in less).
DEFAULT_TIMEOUT_MS = 10_000
MIN_TIMEOUT_MS = 1_000
MAX_TIMEOUT_MS = 60_000


def _is_clean(value: Any) -> bool:
    # NUL cannot be stored in (or even looked up in) PostgreSQL text.
    return isinstance(value, str) and "\x00" not in value


def is_queryable_user(user_id: str) -> bool:
    """Invalid user IDs are skipped, as if the user had no keys (Synapse does the same)."""
    return _is_clean(user_id) and user_id_error(user_id, historical=True) is None


def parse_timeout_ms(body: dict[str, Any]) -> int:
    timeout = body.get("timeout", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise BadRequest("timeout must be a non-negative integer", Codes.INVALID_PARAM)
    return max(MIN_TIMEOUT_MS, min(timeout, MAX_TIMEOUT_MS))


def parse_query(body: dict[str, Any]) -> dict[str, list[str]]:
    """``device_keys`` of /keys/query: user ID → device IDs (empty: all devices)."""
    device_keys = body.get("device_keys")
    if not isinstance(device_keys, dict):
        raise BadRequest("device_keys must be an object", Codes.BAD_JSON)
    query: dict[str, list[str]] = {}
    for user_id, device_ids in device_keys.items():
        if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
            raise BadRequest("device_keys values must be lists of strings", Codes.BAD_JSON)
        if not is_queryable_user(user_id):
            continue
        wanted = [d for d in dict.fromkeys(device_ids) if _is_clean(d)]
        if device_ids and not wanted:
            continue  # only devices that cannot exist: not "every device"
        query[user_id] = wanted
    return query


def parse_claim(body: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``one_time_keys`` of /keys/claim: user ID → device ID → algorithm."""
    one_time_keys = body.get("one_time_keys")
    if not isinstance(one_time_keys, dict):
        raise BadRequest("one_time_keys must be an object", Codes.BAD_JSON)
    query: dict[str, dict[str, str]] = {}
    for user_id, devices in one_time_keys.items():
        if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
            raise BadRequest(
                "one_time_keys must map users to devices to algorithms", Codes.BAD_JSON
            )
        if not is_queryable_user(user_id):
            continue
        wanted = {d: a for d, a in devices.items() if _is_clean(d) and _is_clean(a) and a}
        if wanted:
            query[user_id] = wanted
    return query
