"""Helpers of the tests of membership, invites and queries across servers.

``signed_request`` sends an X-Matrix-signed request to the in-process test server with the
request target exactly as signed (a yarl URL built ``encoded=True``: otherwise the client would
decode ``%21``/``%3A``/``%40`` and the signature would no longer match the raw path).

``two_servers`` runs two of our homeservers (each with its own database: ``store`` and the
``second_store`` fixture) with TLS federation listeners on loopback; ``Peer.user`` makes a user
there and returns a tests.federation.cs_client.MatrixClient for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from homeserver.app import Homeserver
from homeserver.crypto.signing import generate_signing_key
from homeserver.storage import Store
from homeserver.storage.factory import open_postgres, open_sqlite
from tests.dbtemplate import (
    checkout_migrated_schema,
    copy_migrated_sqlite,
    return_schema,
    schema_dsn,
)
from tests.federation.cs_client import MatrixClient
from tests.federation.fake_remote import federation_test_config, serving
from tests.harness import make_user

# --- two in-process homeservers federating over real HTTPS on loopback -----------------------


@pytest.fixture
async def second_store(db_engine: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A second, empty, migrated database on the same engine as ``store`` (the peer's)."""
    schema: str | None = None
    if db_engine == "sqlite":
        await copy_migrated_sqlite(tmp_path / "second.db")
        db = await open_sqlite(tmp_path / "second.db")
    else:
        schema = await checkout_migrated_schema()
        db = await open_postgres(schema_dsn(schema), 1, 4, schema=schema)
    try:
        yield Store(db)
    finally:
        await db.close()
        if schema is not None:
            return_schema(schema)


@dataclass
class Peer:
    hs: Homeserver
    base_url: str
    session: aiohttp.ClientSession

    @property
    def name(self) -> str:
        return self.hs.server_name

    async def user(self, localpart: str) -> MatrixClient:
        """A user with an access token, made straight through the store."""
        user = await make_user(self.hs, localpart, device_id="DEV")
        return MatrixClient(self.session, self.base_url, user.user_id, user.access_token)


@asynccontextmanager
async def two_servers(
    tmp_path: Path, store_a: Store, store_b: Store
) -> AsyncIterator[tuple[Peer, Peer]]:
    """Two of our servers (``localhost:PORT`` each, TLS federation listeners, real clocks),
    serving until the block ends."""
    hs_a = Homeserver(federation_test_config(tmp_path / "a"), generate_signing_key("a"), store_a)
    hs_b = Homeserver(federation_test_config(tmp_path / "b"), generate_signing_key("b"), store_b)
    connector = aiohttp.TCPConnector(ssl=False)
    async with (
        serving(hs_a) as url_a,
        serving(hs_b) as url_b,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        yield Peer(hs_a, url_a, session), Peer(hs_b, url_b, session)
