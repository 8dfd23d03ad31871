"""Issue 16 in the real web client: the built Cinny 4.2.2 in headless Chromium (``driver16.mjs``)
against a real ``homeserver run``. alice and bob, one browser context each: alice searches a
message, finds others in the user directory from the invite dialog, bob opens a space's room
list (its lobby: children it does not know previewed through ``/hierarchy``) and joins one,
alice replies in a thread a Synapse-style client started and edits her reply, and bob sees a
room's unread badge with the server's count, the mention in his inbox (``GET /notifications``),
and the badge gone once he has read the room.

The space's rooms are version 11: Cinny 4.2.2 only takes room IDs with a ``:server`` part, which
version 12's have not, and drops such space children unseen (see ``driver16.mjs``).

Same harness and rules as ``test_cinny.py`` (issue 15): one scenario per feature, sharing the
browser and the server; each asserts on the page (and where the page cannot prove it, on the
server's answers) and fails on any browser error a server answer caused (``judge_events``).
The accounts and rooms a scenario starts from are made through the API; the pages are signed in
as Cinny keeps a session. Screenshots go to ``bench-results/web_client16/``. SQLite only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.real_clients.nio_helpers import NIO_CONFIG
from tests.real_clients.server_process import REPO_ROOT, running_homeserver
from tests.web_client.browser import HERE, Driver, chromium_path
from tests.web_client.cinny_site import serving_cinny
from tests.web_client.test_cinny import judge_events

SERVER_NAME = "cinny16.test"
SCREENSHOTS = REPO_ROOT / "bench-results" / "web_client16"

# Non-2xx answers of issue 16's endpoints that are the protocol working, on top of
# test_cinny.py's: (method, path pattern, status, errcode, why).
EXPECTED_HERE: tuple[tuple[str, str, int, str, str], ...] = (
    (
        "GET",
        r"^/_matrix/client/v1/rooms/[^/]+/hierarchy$",
        403,
        "M_FORBIDDEN",
        "Cinny previews each space child it does not know through /hierarchy of that room; one "
        "the user may not see (invite-only, not invited) is refused, as Synapse does, and the "
        "lobby shows it as an unknown private room",
    ),
)


def _expected_here(event: dict[str, Any]) -> bool:
    path = str(event.get("path", "")).split("?", 1)[0]
    return event["kind"] == "answer" and any(
        method == event["method"]
        and re.search(pattern, path)
        and status == event["status"]
        and errcode == event["errcode"]
        for method, pattern, status, errcode, _why in EXPECTED_HERE
    )


def judge(events: list[dict[str, Any]]) -> list[str]:
    """test_cinny.py's judgement, less the answers expected here."""
    return judge_events([e for e in events if not _expected_here(e)])


def _where(error: str | None) -> str:
    """The error's first line and the driver16.mjs lines it passed through."""
    lines = str(error).splitlines()
    frames = [line.strip() for line in lines[1:] if "driver16.mjs:" in line]
    return "\n  ".join(lines[:1] + frames)


# What each step needs done before it.
NEEDS: dict[str, tuple[str, ...]] = {
    "setup": (),
    "search": ("setup",),
    "directory": ("setup",),
    "space": ("setup",),
    "thread": ("setup",),
    "unread": ("setup",),
}


@dataclass
class Session16:
    driver: Driver
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def step(self, name: str) -> dict[str, Any]:
        """Run ``name`` (after the steps it needs, once each) and fail unless the page showed
        what it should and no server answer broke the client meanwhile (as test_cinny.py)."""
        for needed in NEEDS[name]:
            if needed not in self.results:
                self.results[needed] = self.driver.run(needed)
            if not self.results[needed]["ok"]:
                pytest.fail(
                    f"{name} needs {needed}, which failed: {_where(self.results[needed]['error'])}",
                    pytrace=False,
                )
        result = self.results[name] = self.driver.run(name)
        shots = ", ".join(Path(s).name for s in result["screenshots"])
        if not result["ok"]:
            pytest.fail(
                f"{name}: the page did not get there: {_where(result['error'])}\n"
                f"server answers meanwhile: {judge(result['events'])}\n"
                f"screenshots: {shots}; the step took {result.get('elapsed_ms', 0) / 1000:.1f} s",
                pytrace=False,
            )
        problems = judge(result["events"])
        if problems:
            pytest.fail(
                f"{name}: the page got there, but server answers broke the client on the way:\n  "
                + "\n  ".join(problems),
                pytrace=False,
            )
        return dict(result["details"] or {})


@pytest.fixture(scope="module")
def cinny16(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session16]:
    chromium = chromium_path()
    workdir = tmp_path_factory.mktemp("cinny16")
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
            },
            workdir / "driver16.log",
            HERE / "driver16.mjs",
        )
        session = Session16(driver)
        try:
            yield session
        finally:
            driver.close()
            (SCREENSHOTS / "steps.json").write_text(
                json.dumps(
                    {
                        "chromium": driver.chromium_version,
                        "steps": {
                            name: {"ok": r["ok"], "elapsed_ms": r.get("elapsed_ms")}
                            for name, r in session.results.items()
                        },
                    },
                    indent=2,
                )
            )


def test_search_a_message(cinny16: Session16) -> None:
    cinny16.step("search")


def test_find_users_in_the_directory_from_the_invite_dialog(cinny16: Session16) -> None:
    details = cinny16.step("directory")
    assert details == {
        "bo": "@bob:cinny16.test",
        "caro": "@carol:cinny16.test",
        "dave": 'No matches found for "dave"!',
    }


def test_open_a_space_room_list_built_from_hierarchy(cinny16: Session16) -> None:
    assert cinny16.step("space")["space"].startswith("!")


def test_reply_in_a_thread_and_edit_it(cinny16: Session16) -> None:
    details = cinny16.step("thread")
    assert details["count"] == 2 and details["edited"] is True


def test_unread_badge(cinny16: Session16) -> None:
    assert cinny16.step("unread")["badge"] == "2"
