"""A real web client against a real server: the built Cinny 4.2.2 (matrix-js-sdk 34, libolm) in
headless Chromium, driven by puppeteer-core (``driver.mjs``), pointed at a ``homeserver run``
process. Two users, one browser context each, go through what a new user does: register,
create a room and talk, send a picture (and see its server-made thumbnail), type, set up
cross-signing and key backup, start an encrypted DM, and follow a room upgrade.

One scenario per feature, in order, sharing the browser and the server (later ones build on
earlier ones' rooms; run alone, a test first runs the steps it needs). Each asserts on what
the page shows (and, where the page cannot prove it, on the server's state), and fails if the
browser reported an error caused by a server answer while it ran (see ``judge_events``).
Screenshots of both users after every step go to ``bench-results/web_client/``, with
``steps.json`` (each step's outcome, time and details). After a failed step the driver reloads
both pages so the next starts clean; what that reload's start-up calls provoke is kept for the
record only (the register step judges the same start-up calls).

SQLite only: this is one real process and a browser; one engine is enough here, both engines
are covered by the feature tests of each endpoint.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from tests.real_clients.nio_helpers import NIO_CONFIG
from tests.real_clients.server_process import REPO_ROOT, running_homeserver
from tests.web_client.browser import Driver, chromium_path
from tests.web_client.cinny_site import serving_cinny

SERVER_NAME = "cinny.test"
SCREENSHOTS = REPO_ROOT / "bench-results" / "web_client"

# Console errors that no server answer causes, each with why it is not the server's doing.
HARMLESS_CONSOLE: tuple[tuple[str, str], ...] = (
    (
        "Failed to load resource:",
        "Chromium's own line for every non-2xx answer; each answer is judged below by its "
        "status and errcode instead",
    ),
    (
        "MatrixRTCSessionManager Got room state event for unknown room",
        "matrix-js-sdk's call-session manager hears a new room's state before the SDK has "
        "stored the room (the order of its own event emitters); it logs this with Synapse too",
    ),
)

# Non-2xx answers that are the protocol working, not failing: (method or None, path pattern,
# status, errcode or None, why).
EXPECTED_ANSWERS: tuple[tuple[str | None, str, int, str | None, str], ...] = (
    (
        None,
        r"^/_matrix/client/v3/(register|keys/device_signing/upload)\b",
        401,
        None,
        "user-interactive auth: the first answer lists the stages to complete",
    ),
    (
        None,
        r"^/_matrix/client/",
        404,
        "M_NOT_FOUND",
        "the spec's answer for nothing there yet (no key backup, no such account data)",
    ),
    (
        "GET",
        r"^/\.well-known/matrix/client$",
        404,
        None,
        "no client discovery configured: the spec tells the client to carry on",
    ),
    (
        None,
        # A namespaced MSC prefix only (a dot in the segment): Synapse also serves much of the
        # stable API under a bare /unstable/ (matrix-js-sdk 34 uploads cross-signing keys there),
        # and an M_UNRECOGNIZED there is a gap.
        r"^/_matrix/client/unstable/[a-z0-9_-]+\.[a-z0-9_.-]+/",
        404,
        "M_UNRECOGNIZED",
        "an unstable MSC endpoint the client probes (e.g. im.nheko.summary); Synapse answers "
        "the same unless the experiment is switched on",
    ),
)


def _expected(event: dict[str, Any]) -> bool:
    path = str(event["path"]).split("?", 1)[0]
    return any(
        (method is None or method == event["method"])
        and re.search(pattern, path)
        and status == event["status"]
        and (errcode is None or errcode == event["errcode"])
        for method, pattern, status, errcode, _why in EXPECTED_ANSWERS
    )


def judge_events(events: list[dict[str, Any]]) -> list[str]:
    """The events of one step that mean a server answer broke the client: every uncaught page
    error, every console error not in HARMLESS_CONSOLE, every 5xx, and every other non-2xx
    answer not in EXPECTED_ANSWERS (an endpoint the client needs answering M_UNRECOGNIZED, a
    refused request...)."""
    problems = []
    for event in events:
        kind = event["kind"]
        if kind == "pageerror":
            problems.append(f"{event['user']}: uncaught error in the page: {event['text']}")
        elif kind == "console":
            if not any(str(event["text"]).startswith(prefix) for prefix, _ in HARMLESS_CONSOLE):
                problems.append(f"{event['user']}: console error: {event['text']}")
        elif kind == "answer" and (event["status"] >= 500 or not _expected(event)):
            problems.append(
                f"{event['user']}: {event['method']} {event['path']} -> {event['status']} "
                f"{event['errcode']}"
            )
    return problems


def _test_image(path: Path) -> Path:
    """A 640x480 JPEG (a yellow disc on blue): big enough that any thumbnail is smaller."""
    image = Image.new("RGB", (640, 480), (30, 120, 200))
    ImageDraw.Draw(image).ellipse((170, 90, 470, 390), fill=(250, 200, 40))
    image.save(path, "JPEG", quality=90)
    return path


def _where(error: str | None) -> str:
    """The error's first line and the driver.mjs lines it passed through (not puppeteer's)."""
    lines = str(error).splitlines()
    frames = [line.strip() for line in lines[1:] if "driver.mjs:" in line or " went: " in line]
    return "\n  ".join(lines[:1] + frames)


# What each step needs done before it.
NEEDS: dict[str, tuple[str, ...]] = {
    "register": (),
    "room": ("register",),
    "image": ("register", "room"),
    "typing": ("register", "room"),
    "cross_signing": ("register",),
    "encrypted_dm": ("register",),
    "upgrade": ("register", "room"),
}


@dataclass
class Session:
    driver: Driver
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def step(self, name: str) -> dict[str, Any]:
        """Run ``name`` (after the steps it needs, once each) and fail unless the page showed
        what it should and no server answer broke the client meanwhile."""
        for needed in NEEDS[name]:
            if needed not in self.results:
                self.step_result(needed)
            if not self.results[needed]["ok"]:
                pytest.fail(f"{name} needs {needed}, whose page part failed", pytrace=False)
        result = self.step_result(name)
        shots = ", ".join(Path(s).name for s in result["screenshots"])
        took = f"{result.get('elapsed_ms', 0) / 1000:.1f} s"
        if not result["ok"]:
            pytest.fail(
                f"{name}: the page did not get there: {_where(result['error'])}\n"
                f"server answers meanwhile: {judge_events(result['events'])}\n"
                f"screenshots: {shots}; the step took {took}",
                pytrace=False,
            )
        problems = judge_events(result["events"])
        if problems:
            pytest.fail(
                f"{name}: the page got there, but server answers broke the client on the way:\n  "
                + "\n  ".join(problems),
                pytrace=False,
            )
        return dict(result["details"] or {})

    def step_result(self, name: str) -> dict[str, Any]:
        if name not in self.results:
            self.results[name] = self.driver.run(name)
        return self.results[name]


@pytest.fixture(scope="module")
def cinny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    chromium = chromium_path()
    workdir = tmp_path_factory.mktemp("cinny")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink(missing_ok=True)
    with (
        running_homeserver(workdir, SERVER_NAME, NIO_CONFIG) as homeserver_url,
        serving_cinny(workdir, homeserver_url) as site_url,
    ):
        driver = Driver(
            {
                "CHROMIUM": chromium,
                "SITE_URL": site_url,
                "HOMESERVER_URL": homeserver_url,
                "SERVER_NAME": SERVER_NAME,
                "SCREENSHOT_DIR": str(SCREENSHOTS),
                "IMAGE_PATH": str(_test_image(workdir / "picture.jpg")),
            },
            workdir / "driver.log",
        )
        session = Session(driver)
        try:
            yield session
        finally:
            driver.close()
            # What each step took and whether its page part passed, for the record.
            (SCREENSHOTS / "steps.json").write_text(
                json.dumps(
                    {
                        "chromium": driver.chromium_version,
                        "steps": {
                            name: {
                                "ok": r["ok"],
                                "elapsed_ms": r.get("elapsed_ms"),
                                "details": r.get("details"),
                            }
                            for name, r in session.results.items()
                        },
                    },
                    indent=2,
                )
            )


def test_register_two_users(cinny: Session) -> None:
    details = cinny.step("register")
    assert details == {"alice": "@alice:cinny.test", "bob": "@bob:cinny.test"}


def test_create_a_room_invite_and_talk(cinny: Session) -> None:
    assert cinny.step("room")["room"].startswith("!")


def test_image_and_its_thumbnail_in_the_other_session(cinny: Session) -> None:
    details = cinny.step("image")
    assert details["picture"] == [640, 480]
    assert "/thumbnail/" in details["thumbnail"]["src"]


def test_typing_notice(cinny: Session) -> None:
    cinny.step("typing")


def test_cross_signing_and_key_backup(cinny: Session) -> None:
    details = cinny.step("cross_signing")
    assert details["algorithm"] == "m.megolm_backup.v1.curve25519-aes-sha2"


def test_encrypted_dm_invite_shows_the_inviter(cinny: Session) -> None:
    cinny.step("encrypted_dm")


def test_follow_a_room_upgrade(cinny: Session) -> None:
    details = cinny.step("upgrade")
    assert details["new_room"] != details["old_room"]
