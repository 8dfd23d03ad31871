"""Asking other servers for their users' keys on behalf of a client: one request per server, all
at once; a server that does not answer is reported in the answer's ``failures`` and the rest of
the answer stands (as the spec's /keys/query and /keys/claim describe)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Protocol, TypeVar

from homeserver.errors import MatrixError
from homeserver.federation.client import FederationError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RemoteKeysApi(Protocol):
    """What /keys/query and /keys/claim need of other servers (``hs.remote_keys``)."""

    async def query(
        self, server: str, device_keys: Mapping[str, Collection[str]], timeout_s: float
    ) -> dict[str, Any]: ...

    async def claim(
        self, server: str, one_time_keys: Mapping[str, Mapping[str, str]], timeout_s: float
    ) -> dict[str, Any]: ...


def failure_json(error: Exception) -> dict[str, Any]:
    """A ``failures`` entry: a Matrix error as it is, a federation failure with its reason,
    anything else (our own fault) without details, which stay in the log."""
    if isinstance(error, MatrixError):
        return {"status": error.status, "errcode": error.errcode, "message": error.message}
    if isinstance(error, TimeoutError):
        return {"status": 503, "message": "Timed out"}
    if isinstance(error, FederationError):
        return {"status": 503, "message": str(error) or type(error).__name__}
    return {"status": 503, "message": "Internal error"}


class RemoteKeyRequests:
    def __init__(self, remote: RemoteKeysApi | None) -> None:
        #: None: no federation, every other server's users fail with 503.
        self._remote = remote

    async def ask_servers(
        self,
        by_server: Mapping[str, T],
        ask: Callable[[RemoteKeysApi, str, T], Awaitable[dict[str, Any]]],
        failures: dict[str, Any],
    ) -> dict[str, dict[str, Any]]:
        """Ask every server concurrently; a failure (or no federation at all) goes to
        ``failures`` under the server's name."""
        if not by_server:
            return {}
        remote = self._remote
        if remote is None:
            for server in by_server:
                failures[server] = {"status": 503, "message": "Federation is not available"}
            return {}
        servers = sorted(by_server)
        outcomes = await asyncio.gather(
            *(ask(remote, server, by_server[server]) for server in servers),
            return_exceptions=True,
        )
        answers: dict[str, dict[str, Any]] = {}
        for server, outcome in zip(servers, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # cancellation and the like are not a server's failure
                if isinstance(outcome, FederationError | TimeoutError):
                    logger.info("key request to %s failed: %s", server, outcome)
                else:
                    logger.error("key request to %s failed", server, exc_info=outcome)
                failures[server] = failure_json(outcome)
            elif isinstance(outcome, dict):
                answers[server] = outcome
        return answers
