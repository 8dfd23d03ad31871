"""The built Cinny (``/work/shared/clients/cinny-4.2.2``, or ``$CINNY_DIR``) served with a
``config.json`` that names the homeserver under test (see static_site.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.web_client.static_site import built_app, serving_site


def _cinny_config(homeserver_url: str) -> dict[str, object]:
    return {
        "defaultHomeserver": 0,
        "homeserverList": [homeserver_url],
        "allowCustomHomeservers": False,
        "featuredCommunities": {"openAsDefault": False, "spaces": [], "rooms": [], "servers": []},
        "hashRouter": {"enabled": True, "basename": "/"},
    }


@contextmanager
def serving_cinny(workdir: Path, homeserver_url: str) -> Iterator[str]:
    """Copy the build into ``workdir``, point it at ``homeserver_url``, serve it; yield its URL."""
    build = built_app("cinny-4.2.2", "CINNY_DIR")
    with serving_site(build, workdir / "cinny", _cinny_config(homeserver_url)) as url:
        yield url
