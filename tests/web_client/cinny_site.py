"""The built Cinny (``/work/shared/clients/cinny-4.2.2``, or ``$CINNY_DIR``) served on loopback by
an aiohttp static handler in a background thread, with a ``config.json`` that names the
homeserver under test.

The build is a single-page app with a hash router, so every path that is not a file answers
``index.html`` (what its ``netlify.toml`` does). The shared folder is read-only: the site is a copy.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from tests.real_clients.server_process import REPO_ROOT, free_port

DEFAULT_CINNY_DIR = REPO_ROOT.parent / "shared" / "clients" / "cinny-4.2.2"


def cinny_dir() -> Path:
    path = Path(os.environ.get("CINNY_DIR", str(DEFAULT_CINNY_DIR)))
    if not (path / "index.html").is_file():
        raise AssertionError(f"the built Cinny is not at {path} (set CINNY_DIR)")
    return path


def _cinny_config(homeserver_url: str) -> dict[str, object]:
    return {
        "defaultHomeserver": 0,
        "homeserverList": [homeserver_url],
        "allowCustomHomeservers": False,
        "featuredCommunities": {"openAsDefault": False, "spaces": [], "rooms": [], "servers": []},
        "hashRouter": {"enabled": True, "basename": "/"},
    }


def _site_app(root: Path) -> web.Application:
    resolved_root = root.resolve()
    index = resolved_root / "index.html"

    async def serve(request: web.Request) -> web.StreamResponse:
        # Resolve and confine to the copy: a path that escapes it or names no file is the app.
        candidate = (resolved_root / request.match_info["tail"]).resolve()
        if candidate.is_file() and candidate.is_relative_to(resolved_root):
            return web.FileResponse(candidate)
        return web.FileResponse(index)

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    return app


@contextmanager
def serving_cinny(workdir: Path, homeserver_url: str) -> Iterator[str]:
    """Copy the build into ``workdir``, point it at ``homeserver_url``, serve it; yield its URL."""
    root = workdir / "cinny"
    shutil.copytree(cinny_dir(), root)
    (root / "config.json").write_text(json.dumps(_cinny_config(homeserver_url)))
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_site_app(root), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, name="cinny-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()
