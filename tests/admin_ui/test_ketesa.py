"""Ketesa 1.2.1, synapse-admin's maintained successor (the built copy in /work/shared/clients),
in headless Chromium against a real ``homeserver run``: the operator logs in, visits every page
and every tab it offers, and performs once each action issue 19 names: create a user, reset a
password, log in as a user, shadow-ban, override rate limits, send a server notice, delete a
device, create and delete a registration token, see a report made through the client API, join
a user to a room and make them its admin, block and unblock a room, purge history, delete a
user's media and old media, purge remote media, deactivate, erase, delete a room with block.

As test_synapse_admin.py: the seed is made through the client API, one server and one browser
for the module, steps in order (session.py says what a step must do to pass). SQLite only.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.admin_ui.session import (
    AdminUI,
    AdminUISession,
    Step,
    created,
    deactivated,
    erased,
    module_tests,
    room_deleted,
    room_hash,
    user_hash,
    user_record,
    visit,
)

UI = AdminUI("ketesa", "ketesa-1.2.1", "KETESA_DIR")


def _shadow_banned(session: AdminUISession) -> None:
    assert user_record(session, session.seed.users["erin"]).get("shadow_banned") is True


def _rate_limited(session: AdminUISession) -> None:
    fay = session.seed.users["fay"]
    status, body = session.admin("GET", f"/_synapse/admin/v1/users/{fay}/override_ratelimit")
    assert (status, body) == (200, {"messages_per_second": 7, "burst_count": 11}), (status, body)


def _blocked(wanted: bool) -> Callable[[AdminUISession], None]:
    def verify(session: AdminUISession) -> None:
        status, body = session.admin("GET", f"/_synapse/admin/v1/rooms/{session.seed.lobby}/block")
        assert status == 200 and body["block"] is wanted, (status, body)

    return verify


# Ketesa 1.2.1's user form, on Save, also erases the user whenever the record carries both
# "deactivated" and "erased" (as Synapse's answer does): shadow-ban (erin) and rate limits (fay)
# each get a user of their own, the form of an erased user no longer validates.
STEPS = [
    Step("login", "login", lambda s: {"user": s.admin, "password": s.password}),
    visit("users", lambda s: "#/users"),
    visit("user", lambda s: user_hash(s.users["alice"]), tabs=True),
    visit("rooms", lambda s: "#/rooms"),
    visit("room", lambda s: room_hash(s.lobby), tabs=True),
    visit("media", lambda s: "#/user_media_statistics"),
    visit("reports", lambda s: "#/reports"),
    visit("room_directory", lambda s: "#/room_directory"),
    visit("federation", lambda s: "#/destinations"),
    visit("registration_tokens", lambda s: "#/registration_tokens"),
    visit("scheduled_tasks", lambda s: "#/scheduled_tasks"),
    visit("import_users", lambda s: "#/import_users"),
    Step(
        "create_user",
        "create_user",
        lambda s: {"user": f"@frank:{s.server_name}", "password": "frank-Password-0123"},
        created("frank", "Made in the UI"),
    ),
    Step(
        "reset_password",
        "reset_password",
        lambda s: {"user": s.users["bob"], "password": "bob-New-Password-1"},
    ),
    Step("login_as", "login_as", lambda s: {"user": s.users["bob"]}),
    Step("shadow_ban", "shadow_ban", lambda s: {"user": s.users["erin"]}, _shadow_banned),
    Step(
        "override_rate_limits",
        "override_rate_limits",
        lambda s: {"user": s.users["fay"], "per_second": 7, "burst": 11},
        _rate_limited,
    ),
    Step(
        "server_notice",
        "server_notice",
        lambda s: {"user": s.users["bob"], "text": "A notice from the admin"},
    ),
    Step(
        "delete_device", "delete_device", lambda s: {"user": s.users["alice"], "device": s.device}
    ),
    Step("create_token", "create_token", lambda s: {"token": "ui-made-token"}),
    Step("delete_token", "delete_token", lambda s: {"token": "ui-made-token"}),
    Step(
        "see_report",
        "see_report",
        lambda s: {"reporter": s.users["bob"], "reason": s.report_reason},
    ),
    Step("join_user", "join_user", lambda s: {"room": s.lobby, "user": s.users["erin"]}),
    Step("make_room_admin", "make_room_admin", lambda s: {"room": s.lobby, "user": s.users["bob"]}),
    Step("block_room", "block_room", lambda s: {"room": s.lobby}, _blocked(True)),
    Step("unblock_room", "unblock_room", lambda s: {"room": s.lobby}, _blocked(False)),
    Step("purge_history", "purge_history", lambda s: {"room": s.lobby}),
    # The media page lists users with media only: old media first, while alice has some.
    Step("delete_old_media", "delete_old_media"),
    Step(
        "delete_user_media",
        "delete_user_media",
        lambda s: {"user": s.users["alice"], "media": s.media},
    ),
    Step(
        "deactivate_user",
        "deactivate_user",
        lambda s: {"user": s.users["carol"]},
        deactivated("carol"),
    ),
    Step("erase_user", "erase_user", lambda s: {"user": s.users["dave"]}, erased("dave")),
    Step("delete_room", "delete_room", lambda s: {"room": s.doomed}, room_deleted),
]


ui, test_step, test_every_request_answered, test_server_logged_no_error = module_tests(UI, STEPS)
