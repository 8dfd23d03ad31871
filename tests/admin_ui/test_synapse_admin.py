"""synapse-admin 0.11.4 (the built copy in /work/shared/clients) in headless Chromium against a
real ``homeserver run``: the operator logs in, visits every page and every tab it offers, and
performs once each action it has (issue 19): create, reset the password of, deactivate and
erase a user, send a server notice, delete a device, create and delete a registration token,
see a report made through the client API, delete a user's media and old media, publish and
delete a room. (Login as a user, shadow-ban, rate limits, room block, make admin and purge
history are Ketesa's only: test_ketesa.py.)

The seed (users, rooms with messages, a picture, a second device, a report) is made through the
client API first. One server and one browser for the module; steps run in order, each test
running the steps before it that have not run (see session.py for what a step must do to pass).
SQLite only: a real process and a browser; both engines are covered by each endpoint's tests.
"""

from __future__ import annotations

from tests.admin_ui.session import (
    AdminUI,
    Step,
    created,
    deactivated,
    erased,
    module_tests,
    room_deleted,
    room_hash,
    user_hash,
    visit,
)

UI = AdminUI("synapse-admin", "synapse-admin-0.11.4", "SYNAPSE_ADMIN_DIR")

STEPS = [
    Step("login", "login", lambda s: {"user": s.admin, "password": s.password}),
    visit("users", lambda s: "#/users"),
    visit("user", lambda s: user_hash(s.users["alice"]), tabs=True),
    visit("rooms", lambda s: "#/rooms"),
    visit("room", lambda s: room_hash(s.lobby), tabs=True),
    visit("users_media", lambda s: "#/user_media_statistics"),
    visit("reports", lambda s: "#/reports"),
    visit("room_directory", lambda s: "#/room_directory"),
    visit("federation", lambda s: "#/destinations"),
    visit("registration_tokens", lambda s: "#/registration_tokens"),
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
    # The media page lists users with media only: old media first, while alice has some.
    Step("delete_old_media", "delete_old_media"),
    Step(
        "delete_user_media",
        "delete_user_media",
        lambda s: {"user": s.users["alice"], "media": s.media},
    ),
    Step(
        "publish_room",
        "publish_room",
        lambda s: {"room": s.lobby},
        ui_bugs=(
            (
                "An error has occurred.",
                "synapse-admin 0.11.4 maps the answer of PUT /directory/list/room ({} in the spec "
                "and in Synapse) to a record without an id, and react-admin's cache update then "
                "throws 'Invalid dataProvider response for create: missing id' after the 200",
            ),
        ),
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
