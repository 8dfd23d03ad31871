"""What the two admin UI test modules share: a ``homeserver run`` seeded through the client API,
a served copy of the UI, the driver (``driver.mjs``), and the judgement of each step.

A step passes when the page got where it should (the driver's "ok": for an action, the request
that does the work was answered 2xx) and, meanwhile: no answer of the homeserver was 404 or 5xx
(or any other 4xx not in ``EXPECTED_ANSWERS``), react-admin showed no red notice, and the page
threw nothing the server could have caused. Every answer of every step goes to
``bench-results/admin_ui/<ui>/requests.json`` and each refused request, with the seeded IDs
turned back into names, to ``refused.txt`` (the list of what the homeserver does not answer yet);
a screenshot of every page and tab beside them.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import pytest
import yaml
from PIL import Image

from tests.federation.cs_client import register_with_shared_secret
from tests.http_client import Client, q
from tests.real_clients.nio_helpers import NIO_CONFIG, RELAXED_LIMIT
from tests.real_clients.server_process import REPO_ROOT, free_port, running_homeserver
from tests.web_client.browser import Driver, chromium_path
from tests.web_client.static_site import built_app, serving_site

HERE = Path(__file__).resolve().parent
RESULTS = REPO_ROOT / "bench-results" / "admin_ui"
SERVER_CONFIG: dict[str, Any] = {
    **NIO_CONFIG,
    # The operator logs in once per UI; the seeding logs a second device in.
    "rc_login": {
        "address": RELAXED_LIMIT,
        "account": RELAXED_LIMIT,
        "failed_attempts": RELAXED_LIMIT,
    },
    # The "send server notice" action needs them configured, as on Synapse.
    "server_notices": {
        "system_mxid_localpart": "notices",
        "system_mxid_display_name": "Server Notices",
        "room_name": "Server Notices",
    },
}

# Non-2xx answers that are the protocol working, not a gap: (method or None, path pattern,
# status, errcode or None, why).
EXPECTED_ANSWERS: tuple[tuple[str | None, str, int, str | None, str], ...] = (
    (
        "GET",
        r"^/_matrix/client/(v1|unstable/org\.matrix\.msc2965)/auth_metadata$",
        404,
        "M_UNRECOGNIZED",
        "Ketesa asks whether the server delegates auth to MAS (MSC2965); Synapse without MAS "
        "answers the same, and Ketesa then uses the password login",
    ),
    (
        "GET",
        r"^/_matrix/client/v3/user/[^/]+/account_data/io\.element\.synapse\.admin_client_config$",
        404,
        "M_NOT_FOUND",
        "Ketesa reads its own settings from the admin's account data; none saved yet is the "
        "spec's M_NOT_FOUND, and Ketesa falls back to its defaults",
    ),
)

# Page errors and console errors no server answer causes: (prefix, why).
HARMLESS_PAGE_ERRORS: tuple[tuple[str, str], ...] = (
    (
        "__SYNAPSE_ADMIN_VERSION__ is not defined",
        "synapse-admin 0.11.4's build leaves its version constant undefined (clients README)",
    ),
    (
        "Failed to load resource:",
        "Chromium's own console line for every non-2xx answer; each answer is judged by its "
        "status and errcode instead",
    ),
)


@dataclass(frozen=True)
class AdminUI:
    name: str  # "synapse-admin" or "ketesa": the driver's ADMIN_UI and the results folder
    folder: str  # its build in /work/shared/clients
    env_var: str  # where to find another build


@dataclass
class Seed:
    """What the client API made before the UI is driven (IDs the steps work on)."""

    server_name: str
    admin: str
    password: str
    users: dict[str, str] = field(default_factory=dict)  # localpart -> user ID
    tokens: dict[str, str] = field(default_factory=dict)  # localpart -> access token
    device: str = ""  # alice's second device, to be deleted
    media: str = ""  # alice's upload (media ID), to be deleted
    lobby: str = ""  # a room with members, messages and a picture
    doomed: str = ""  # a room to delete
    event: str = ""  # alice's message in the lobby, reported by bob
    report_reason: str = "Seeded report: spam from alice"
    report_answer: tuple[int, Any] = (0, None)  # what the client API said to the report

    def names(self) -> dict[str, str]:
        """Seeded values -> placeholders, to turn a request path into its template."""
        mapping = {self.device: "{device}", self.media: "{media}", self.server_name: "{server}"}
        return {k: v for k, v in mapping.items() if k}


def _png() -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    Image.new("RGB", (64, 48), (200, 60, 30)).save(buffer, "PNG")
    return buffer.getvalue()


async def _seed(base_url: str, secret: str, server_name: str) -> Seed:
    async with aiohttp.ClientSession() as session:
        http = Client(session, base_url)
        admin, _ = await register_with_shared_secret(session, base_url, secret, "admin", admin=True)
        seed = Seed(server_name, admin, "admin-password-0123456789")
        for name in ("alice", "bob", "carol", "dave", "erin", "fay"):
            seed.users[name], seed.tokens[name] = await register_with_shared_secret(
                session, base_url, secret, name
            )
        alice, bob = seed.tokens["alice"], seed.tokens["bob"]
        login = await http.ok(
            "POST",
            "/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "alice"},
                "password": "alice-password-0123456789",
                "device_id": "ALICELAPTOP",
                "initial_device_display_name": "Alice's laptop",
            },
        )
        seed.device = login["device_id"]
        async with session.post(
            base_url + "/_matrix/media/v3/upload?filename=red.png",
            data=_png(),
            headers={"Authorization": f"Bearer {alice}", "Content-Type": "image/png"},
        ) as response:
            assert response.status == 200, await response.text()
            mxc = (await response.json())["content_uri"]
        seed.media = mxc.rsplit("/", 1)[1]
        created = await http.ok(
            "POST",
            "/createRoom",
            alice,
            {"name": "Lobby", "room_alias_name": "lobby", "preset": "public_chat"},
        )
        seed.lobby = created["room_id"]
        await http.ok("POST", f"/join/{q(seed.lobby)}", bob, {})
        for n in range(5):
            sent = await http.ok(
                "PUT",
                f"/rooms/{q(seed.lobby)}/send/m.room.message/seed{n}",
                alice,
                {"msgtype": "m.text", "body": f"Message {n} from alice"},
            )
            seed.event = seed.event or sent["event_id"]
        await http.ok(
            "PUT",
            f"/rooms/{q(seed.lobby)}/send/m.room.message/seedpic",
            alice,
            {
                "msgtype": "m.image",
                "body": "red.png",
                "url": mxc,
                "info": {"mimetype": "image/png"},
            },
        )
        await http.ok(
            "PUT",
            f"/rooms/{q(seed.lobby)}/send/m.room.message/bob0",
            bob,
            {"msgtype": "m.text", "body": "Hello from bob"},
        )
        seed.report_answer = await http.call(
            "POST",
            f"/rooms/{q(seed.lobby)}/report/{q(seed.event)}",
            bob,
            {"reason": seed.report_reason, "score": -100},
        )
        doomed = await http.ok(
            "POST", "/createRoom", alice, {"name": "Doomed", "preset": "private_chat"}
        )
        seed.doomed = doomed["room_id"]
        return seed


def admin_call(
    base_url: str, token: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """One admin API request from the test itself (to check what an action did)."""
    request = urllib.request.Request(
        base_url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, raw.decode(errors="replace")


def _expected(event: dict[str, Any]) -> bool:
    path = str(event["path"]).split("?", 1)[0]
    return any(
        (method is None or method == event["method"])
        and re.search(pattern, unquote(path))
        and status == event["status"]
        and (errcode is None or errcode == event["errcode"])
        for method, pattern, status, errcode, _why in EXPECTED_ANSWERS
    )


def refused(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers that count against the server: 5xx, and 4xx not in EXPECTED_ANSWERS."""
    return [
        e
        for e in events
        if e["kind"] == "answer" and e["status"] >= 400 and (e["status"] >= 500 or not _expected(e))
    ]


def judge(result: dict[str, Any], ui_bugs: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """What went wrong in one step besides the page not getting there."""
    problems = [
        f"{e['method']} {unquote(e['path'])} -> {e['status']} {e['errcode']}"
        for e in refused(result["events"])
    ]
    for event in result["events"]:
        if event["kind"] in ("pageerror", "console") and not any(
            str(event["text"]).startswith(prefix) for prefix, _ in HARMLESS_PAGE_ERRORS
        ):
            problems.append(f"{event['kind']}: {str(event['text']).splitlines()[0]}")
    for notice in (result.get("details") or {}).get("notices", []):
        if notice["kind"] == "error" and notice["text"] not in {text for text, _ in ui_bugs}:
            problems.append(f"red notice: {notice['text']}")
    return list(dict.fromkeys(problems))


@dataclass
class Step:
    name: str  # the test's name for it (screenshots are named after it)
    action: str  # the driver's step
    args: Callable[[Seed], dict[str, Any]] = lambda seed: {}
    # After a step the page got through: what the server must now hold (raises AssertionError).
    verify: Callable[[AdminUISession], None] | None = None
    # Red notices the UI shows whatever the server answers: (text, why).
    ui_bugs: tuple[tuple[str, str], ...] = ()


def visit(name: str, hash_of: Callable[[Seed], str], tabs: bool = False) -> Step:
    return Step(name, "visit", lambda seed: {"name": name, "hash": hash_of(seed), "tabs": tabs})


def user_hash(user_id: str) -> str:
    return f"#/users/{quote(user_id, safe='')}"


def room_hash(room_id: str) -> str:
    return f"#/rooms/{quote(room_id, safe='')}/show"


class AdminUISession:
    """One UI against one seeded server: runs its steps in order (each once, those before it
    first) and judges each."""

    def __init__(
        self, ui: AdminUI, driver: Driver, seed: Seed, steps: list[Step], base_url: str, log: Path
    ) -> None:
        self.ui = ui
        self.driver = driver
        self.seed = seed
        self.steps = {step.name: step for step in steps}
        self.order = [step.name for step in steps]
        self.base_url = base_url
        self.server_log = log
        self.results: dict[str, dict[str, Any]] = {}
        self.admin_token = ""

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if not self.admin_token:
            _, login = admin_call(
                self.base_url,
                "",
                "POST",
                "/_matrix/client/v3/login",
                {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": self.seed.admin},
                    "password": self.seed.password,
                },
            )
            self.admin_token = login["access_token"]
        return admin_call(self.base_url, self.admin_token, method, path, body)

    def result(self, name: str) -> dict[str, Any]:
        for earlier in self.order[: self.order.index(name) + 1]:
            if earlier not in self.results:
                step = self.steps[earlier]
                self.results[earlier] = self.driver.run(step.action, args=step.args(self.seed))
        return self.results[name]

    def check(self, name: str) -> dict[str, Any]:
        """Fail unless step ``name`` got through cleanly (and did what it says on the server)."""
        result = self.result(name)
        problems = judge(result, self.steps[name].ui_bugs)
        took = f"{result.get('elapsed_ms', 0) / 1000:.1f} s"
        if not result["ok"]:
            first = str(result["error"]).splitlines()
            error = "\n  ".join(line for line in first if "file://" not in line)
            pytest.fail(
                f"{name}: the page did not get there: {error}\n"
                f"  meanwhile: {problems}\n  the step took {took}",
                pytrace=False,
            )
        if problems:
            pytest.fail(
                f"{name}: got there, but on the way:\n  " + "\n  ".join(problems), pytrace=False
            )
        step = self.steps[name]
        if step.verify is not None:
            step.verify(self)
        return dict(result["details"] or {})

    def template(self, path: str) -> str:
        """``path`` without its query, IDs in it turned into placeholders."""
        text = unquote(path.split("?", 1)[0])
        for value, placeholder in sorted(self.seed.names().items(), key=lambda kv: -len(kv[0])):
            text = text.replace(value, placeholder)
        text = re.sub(r"@[^/:]+:[^/]+", "{user}", text)
        text = re.sub(r"![^/]+", "{room}", text)
        return re.sub(r"\$[^/]+", "{event}", text)

    def write_record(self) -> list[str]:
        """requests.json (every answer, per step) and refused.txt (each refused request once);
        returns the refused lines."""
        folder = RESULTS / self.ui.name
        record = {
            name: {
                "ok": r["ok"],
                "elapsed_ms": r.get("elapsed_ms"),
                "answers": [
                    f"{e['status']} {e['method']} {unquote(e['path'])}"
                    for e in r["events"]
                    if e["kind"] == "answer"
                ],
                "problems": judge(r, self.steps[name].ui_bugs),
                "error": (r["error"] or "").splitlines()[:2],
            }
            for name, r in self.results.items()
        }
        (folder / "requests.json").write_text(json.dumps(record, indent=2))
        lines: dict[str, None] = {}
        status, body = self.seed.report_answer
        if status != 200:
            errcode = body.get("errcode") if isinstance(body, dict) else None
            report = "POST /_matrix/client/v3/rooms/{room}/report/{event}"
            lines[f"{report} -> {status} {errcode}"] = None
        for r in self.results.values():
            for e in refused(r["events"]) + refused(r.get("reset_events") or []):
                lines[
                    f"{e['method']} {self.template(e['path'])} -> {e['status']} {e['errcode']}"
                ] = None
        (folder / "refused.txt").write_text("".join(f"{line}\n" for line in sorted(lines)))
        return sorted(lines)

    def server_errors(self) -> list[str]:
        errors = []
        for line in self.server_log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                if "Traceback" in line or " ERROR " in line:
                    errors.append(line)
                continue
            if isinstance(entry, dict) and entry.get("level") in ("ERROR", "CRITICAL"):
                errors.append(f"{entry.get('logger')}: {entry.get('message')}")
        return errors


# ---- what some steps must leave on the server (checked through the admin API) -----------------


def user_record(session: AdminUISession, user_id: str) -> dict[str, Any]:
    status, body = session.admin("GET", f"/_synapse/admin/v2/users/{quote(user_id, safe='')}")
    assert status == 200, body
    return dict(body)


def created(localpart: str, displayname: str) -> Callable[[AdminUISession], None]:
    def verify(session: AdminUISession) -> None:
        record = user_record(session, f"@{localpart}:{session.seed.server_name}")
        assert record["displayname"] == displayname, record

    return verify


def deactivated(name: str) -> Callable[[AdminUISession], None]:
    def verify(session: AdminUISession) -> None:
        assert user_record(session, session.seed.users[name])["deactivated"] is True

    return verify


def erased(name: str) -> Callable[[AdminUISession], None]:
    def verify(session: AdminUISession) -> None:
        record = user_record(session, session.seed.users[name])
        assert record["deactivated"] is True and record.get("erased") is True, record

    return verify


def room_deleted(session: AdminUISession) -> None:
    status, body = session.admin(
        "GET", f"/_synapse/admin/v1/rooms/{quote(session.seed.doomed, safe='')}"
    )
    assert status == 404, body


# ---- the module's session and its tests ------------------------------------------------------


def step_names(steps: list[Step]) -> list[str]:
    return [step.name for step in steps]


@contextmanager
def admin_ui_session(ui: AdminUI, steps: list[Step], workdir: Path) -> Iterator[AdminUISession]:
    """A seeded server, the UI served against it, one browser: the session for one module."""
    chromium = chromium_path()
    build = built_app(ui.folder, ui.env_var)
    shots = RESULTS / ui.name
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink(missing_ok=True)
    server_name = f"{ui.name}.test"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    # public_baseurl: the server answers /.well-known/matrix/client, which Ketesa asks first.
    config = {**SERVER_CONFIG, "public_baseurl": base_url + "/"}
    with running_homeserver(workdir, server_name, config, port=port) as homeserver_url:
        secret = yaml.safe_load((workdir / "homeserver.yaml").read_text())[
            "registration_shared_secret"
        ]
        seed = asyncio.run(_seed(homeserver_url, secret, server_name))
        with serving_site(build, workdir / ui.folder, {"restrictBaseUrl": homeserver_url}) as site:
            driver = Driver(
                {
                    "CHROMIUM": chromium,
                    "SITE_URL": site,
                    "HOMESERVER_URL": homeserver_url,
                    "SCREENSHOT_DIR": str(shots),
                    "ADMIN_UI": ui.name,
                },
                workdir / "driver.log",
                script=HERE / "driver.mjs",
            )
            session = AdminUISession(
                ui, driver, seed, steps, homeserver_url, workdir / "server.log"
            )
            try:
                yield session
            finally:
                driver.close()
                session.write_record()


def module_tests(ui: AdminUI, steps: list[Step]) -> tuple[Any, ...]:
    """What a UI's test module holds: its ``ui`` fixture (one server, one browser) and its three
    tests: each step, every request answered, no ERROR in the server's log."""

    @pytest.fixture(scope="module", name="ui")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminUISession]:
        with admin_ui_session(ui, steps, tmp_path_factory.mktemp(ui.name)) as session:
            yield session

    @pytest.mark.parametrize("name", step_names(steps))
    def test_step(ui: AdminUISession, name: str) -> None:
        ui.check(name)

    def test_every_request_answered(ui: AdminUISession) -> None:
        check_every_request_answered(ui)

    def test_server_logged_no_error(ui: AdminUISession) -> None:
        check_server_logged_no_error(ui)

    return fixture, test_step, test_every_request_answered, test_server_logged_no_error


def check_every_request_answered(session: AdminUISession) -> None:
    """After all steps: no request refused (each refused one listed once, as in refused.txt)."""
    session.result(session.order[-1])
    lines = session.write_record()
    assert not lines, "refused requests:\n  " + "\n  ".join(lines)


def check_server_logged_no_error(session: AdminUISession) -> None:
    session.result(session.order[-1])
    errors = session.server_errors()
    assert not errors, "\n".join(errors[:20])
