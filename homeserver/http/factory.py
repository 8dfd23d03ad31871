"""Builds the aiohttp application for one listener from the resources it serves."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from homeserver.http import health, well_known
from homeserver.http import metrics as metrics_http
from homeserver.http.admin import federation as admin_federation
from homeserver.http.admin import history_purge as admin_history_purge
from homeserver.http.admin import lifecycle as admin_lifecycle
from homeserver.http.admin import media as admin_media
from homeserver.http.admin import register as admin_register
from homeserver.http.admin import registration_tokens as admin_registration_tokens
from homeserver.http.admin import reports as admin_reports
from homeserver.http.admin import room_ops as admin_room_ops
from homeserver.http.admin import rooms as admin_rooms
from homeserver.http.admin import server_notices as admin_server_notices
from homeserver.http.admin import server_version as admin_server_version
from homeserver.http.admin import user_details as admin_user_details
from homeserver.http.admin import users as admin_users
from homeserver.http.client import (
    account,
    capabilities,
    create_room,
    devices,
    directory,
    joined_rooms,
    login,
    membership,
    profile,
    redact,
    register,
    room_read,
    room_send,
    room_state,
    room_upgrade,
    versions,
    voip,
)
from homeserver.http.client import account_data as account_data_http
from homeserver.http.client import filter as filter_http
from homeserver.http.client import keys as keys_http
from homeserver.http.client import media as media_http
from homeserver.http.client import presence as presence_http
from homeserver.http.client import push_rules as push_rules_http
from homeserver.http.client import pushers as pushers_http
from homeserver.http.client import receipts as receipts_http
from homeserver.http.client import relations as relations_http
from homeserver.http.client import reporting as reporting_http
from homeserver.http.client import room_keys as room_keys_http
from homeserver.http.client import search as search_http
from homeserver.http.client import spaces as spaces_http
from homeserver.http.client import sync as sync_http
from homeserver.http.client import tags as tags_http
from homeserver.http.client import timestamp_to_event as timestamp_to_event_http
from homeserver.http.client import to_device as to_device_http
from homeserver.http.client import typing as typing_http
from homeserver.http.client import user_directory as user_directory_http
from homeserver.http.federation import hierarchy as federation_hierarchy
from homeserver.http.federation import media as federation_media
from homeserver.http.federation import membership as federation_membership
from homeserver.http.federation import public_rooms as federation_public_rooms
from homeserver.http.federation import queries as federation_queries
from homeserver.http.federation import room_events as federation_room_events
from homeserver.http.federation import transactions as federation_transactions
from homeserver.http.federation import version as federation_version
from homeserver.http.keys import key_query, server_key
from homeserver.http.middleware import (
    access_log_middleware,
    cors_middleware,
    error_middleware,
)

#: Request bodies larger than this are refused with 413 M_TOO_LARGE (events are at most 64 KiB;
#: room creation with initial_state is the largest body we take).
MAX_REQUEST_BYTES = 1024 * 1024


def new_listener_app(resources: Iterable[str]) -> web.Application:
    """An application serving ``/health`` plus the routes of each named resource. The caller
    (homeserver.app) puts the shared objects under the keys in homeserver.http.appkeys."""
    served = frozenset(resources)
    app = web.Application(
        middlewares=[
            access_log_middleware,
            metrics_http.metrics_middleware,
            cors_middleware,
            error_middleware,
        ],
        client_max_size=MAX_REQUEST_BYTES,
    )
    health.add_routes(app.router)
    if "client" in served:
        register.add_routes(app.router)
        admin_registration_tokens.add_client_routes(app.router)
        login.add_routes(app.router)
        account.add_routes(app.router)
        devices.add_routes(app.router)
        profile.add_routes(app.router)
        user_directory_http.add_routes(app.router)
        capabilities.add_routes(app.router)
        versions.add_routes(app.router)
        create_room.add_routes(app.router)
        directory.add_routes(app.router)
        membership.add_routes(app.router)
        room_send.add_routes(app.router)
        room_state.add_routes(app.router)
        room_upgrade.add_routes(app.router)
        room_read.add_routes(app.router)
        relations_http.add_routes(app.router)
        redact.add_routes(app.router)
        search_http.add_routes(app.router)
        joined_rooms.add_routes(app.router)
        sync_http.add_routes(app.router)
        filter_http.add_routes(app.router)
        account_data_http.add_routes(app.router)
        tags_http.add_routes(app.router)
        push_rules_http.add_routes(app.router)
        pushers_http.add_routes(app.router)
        receipts_http.add_routes(app.router)
        reporting_http.add_routes(app.router)
        timestamp_to_event_http.add_routes(app.router)
        to_device_http.add_routes(app.router)
        typing_http.add_routes(app.router)
        presence_http.add_routes(app.router)
        keys_http.add_routes(app.router)
        media_http.add_routes(app.router)
        room_keys_http.add_routes(app.router)
        spaces_http.add_routes(app.router)
        voip.add_routes(app.router)
        well_known.add_routes(app.router)
    if "metrics" in served:
        metrics_http.add_routes(app.router)
    if "admin" in served:
        admin_register.add_routes(app.router)
        admin_server_version.add_routes(app.router)
        admin_rooms.add_routes(app.router)
        admin_users.add_routes(app.router)
        admin_user_details.add_routes(app.router)
        admin_registration_tokens.add_routes(app.router)
        admin_federation.add_routes(app.router)
        admin_lifecycle.add_routes(app.router)
        admin_media.add_routes(app.router)
        admin_reports.add_routes(app.router)
        admin_room_ops.add_routes(app.router)
        admin_server_notices.add_routes(app.router)
        admin_history_purge.add_routes(app.router)
    if "federation" in served:
        federation_version.add_routes(app.router)
        federation_transactions.add_routes(app.router)
        federation_room_events.add_routes(app.router)
        federation_membership.add_routes(app.router)
        federation_queries.add_routes(app.router)
        federation_public_rooms.add_routes(app.router)
        federation_hierarchy.add_routes(app.router)
        federation_media.add_routes(app.router)
    if "keys" in served:
        server_key.add_routes(app.router)
        key_query.add_routes(app.router)
    return app
