"""A built single-page web app (Cinny, synapse-admin, Ketesa: each a folder in
``/work/shared/clients``) served on loopback by an aiohttp static handler in a background thread,
from a copy whose ``config.json`` names the homeserver under test (the shared folder is
read-only).

Every path that names no file answers ``index.html``, as the apps' own hosting does (hash
routers, and client-side routes such as Ketesa's ``/auth-callback``).
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
from typing import Any

from aiohttp import web

from tests.real_clients.server_process import REPO_ROOT, free_port

SHARED_CLIENTS = REPO_ROOT.parent / "shared" / "clients"


def built_app(folder: str, env_var: str) -> Path:
    """The build in ``$env_var`` if set, else ``/work/shared/clients/<folder>``."""
    path = Path(os.environ.get(env_var, str(SHARED_CLIENTS / folder)))
    if not (path / "index.html").is_file():
        raise AssertionError(f"the built app is not at {path} (set {env_var})")
    return path


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
def serving_site(build: Path, root: Path, config: dict[str, Any]) -> Iterator[str]:
    """Copy ``build`` to ``root``, write ``config`` as its ``config.json``, serve it; yield its
    URL."""
    shutil.copytree(build, root)
    (root / "config.json").chmod(0o644)
    (root / "config.json").write_text(json.dumps(config))
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_site_app(root), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, name=f"site-{root.name}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()
