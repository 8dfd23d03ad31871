"""m.room.server_acl matching: one row per rule."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.federation.acl import server_allowed_by_acl

ALLOW_ALL: dict[str, Any] = {"allow": ["*"]}

CASES: list[tuple[str, dict[str, Any] | None, str, bool]] = [
    ("no ACL allows everyone", None, "evil.example", True),
    ("empty allow lets nobody in", {}, "good.example", False),
    ("explicit empty allow", {"allow": []}, "good.example", False),
    ("allow *", ALLOW_ALL, "good.example", True),
    ("exact allow", {"allow": ["good.example"]}, "good.example", True),
    ("exact allow, other name", {"allow": ["good.example"]}, "bad.example", False),
    ("port ignored", {"allow": ["good.example"]}, "good.example:8448", True),
    ("port ignored in deny", {"allow": ["*"], "deny": ["bad.example"]}, "bad.example:1", False),
    ("case-insensitive", {"allow": ["Good.Example"]}, "gOOD.example", True),
    ("* matches subdomains", {"allow": ["*.good.example"]}, "a.b.good.example", True),
    ("* needs the dot here", {"allow": ["*.good.example"]}, "good.example", False),
    ("? matches one char", {"allow": ["serv?r.example"]}, "server.example", True),
    ("? not zero chars", {"allow": ["serv?r.example"]}, "servr.example", False),
    ("? not two chars", {"allow": ["serv?r.example"]}, "servear.example", False),
    ("regex chars are literal", {"allow": ["a.b"]}, "axb", False),
    ("deny wins over allow", {"allow": ["*"], "deny": ["evil.example"]}, "evil.example", False),
    ("deny glob", {"allow": ["*"], "deny": ["*.evil.example"]}, "x.evil.example", False),
    ("deny other server", {"allow": ["*"], "deny": ["evil.example"]}, "good.example", True),
    ("ip literal allowed by default", ALLOW_ALL, "127.0.0.1:8448", True),
    ("ip literal refused", {**ALLOW_ALL, "allow_ip_literals": False}, "127.0.0.1:8448", False),
    ("ipv6 literal refused", {**ALLOW_ALL, "allow_ip_literals": False}, "[::1]:8448", False),
    ("ipv6 no port refused", {**ALLOW_ALL, "allow_ip_literals": False}, "[::1]", False),
    ("hostname fine without literals", {**ALLOW_ALL, "allow_ip_literals": False}, "a.b", True),
    ("non-bool flag ignored", {**ALLOW_ALL, "allow_ip_literals": "no"}, "10.0.0.1", True),
    ("ip literal can be denied", {"allow": ["*"], "deny": ["10.*"]}, "10.1.2.3", False),
    ("non-string entries ignored", {"allow": [1, None, "ok.example"]}, "ok.example", True),
    ("allow not a list", {"allow": "*"}, "ok.example", False),
    ("localhost with port", {"allow": ["localhost"]}, "localhost:8510", True),
]


@pytest.mark.parametrize(
    ("acl", "server", "expected"),
    [pytest.param(acl, server, expected, id=name) for name, acl, server, expected in CASES],
)
def test_server_allowed_by_acl(acl: dict[str, Any] | None, server: str, expected: bool) -> None:
    assert server_allowed_by_acl(acl, server) is expected
