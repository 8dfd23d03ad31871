"""User-interactive authentication (spec "User-interactive authentication API").

Most flows we offer have a single stage, so one successful stage completes the operation;
registration with ``registration_requires_token`` has two (``m.login.registration_token`` then
``m.login.dummy``), run by :meth:`UserInteractiveAuth.authenticate_flow`, whose completed
stages are remembered in the database by the stage itself (``completed_stages``). As in
Synapse, a client may skip the first round trip and send ``auth`` without a ``session`` (nio
registers that way); a session it does name must exist, be unexpired and belong to the same
operation and user, so a session opened to delete a device cannot change a password.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

from homeserver.clock import WallClock
from homeserver.errors import BadRequest, Codes, Forbidden, MatrixError
from homeserver.storage import Store
from homeserver.storage.ui_auth import UIAuthSession

#: Synapse's UI auth session lifetime (48 hours).
SESSION_LIFETIME_MS = 48 * 3600 * 1000

DUMMY = "m.login.dummy"
PASSWORD = "m.login.password"
REGISTRATION_TOKEN = "m.login.registration_token"

#: Checks one stage's ``auth`` dict; raises :class:`StageFailed` when it does not pass.
StageChecker = Callable[[str, dict[str, Any]], Awaitable[None]]


class StageFailed(Exception):
    """A stage was attempted and failed; the message is shown to the client."""

    def __init__(self, message: str, errcode: str = Codes.FORBIDDEN) -> None:
        super().__init__(message)
        self.message = message
        self.errcode = errcode


class AuthRequired(MatrixError):
    """401 with the flows still open. The first answer has no ``errcode`` (as Synapse's), a
    failed stage adds ``errcode`` and ``error``."""

    def __init__(
        self,
        session_id: str,
        stages: Sequence[str],
        *,
        errcode: str | None = None,
        message: str | None = None,
        flows: Sequence[Sequence[str]] | None = None,
        completed: Sequence[str] = (),
    ) -> None:
        super().__init__(HTTPStatus.UNAUTHORIZED, errcode or "", message or "Authentication needed")
        if flows is None:
            flows = [[stage] for stage in stages]
        self.body: dict[str, Any] = {
            "session": session_id,
            "flows": [{"stages": list(flow)} for flow in flows],
            "params": {},
            "completed": list(completed),
        }
        if errcode is not None:
            self.body["errcode"] = errcode
            self.body["error"] = message or ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.body)


class UserInteractiveAuth:
    def __init__(self, store: Store, clock: WallClock) -> None:
        self._store = store
        self._clock = clock

    async def authenticate(
        self,
        operation: str,
        auth: Any,
        *,
        stages: Sequence[str],
        check: StageChecker,
        user_id: str | None = None,
    ) -> None:
        """Return when ``auth`` completes one of ``stages`` for ``operation``; otherwise raise
        401 (flows to follow), 400 (malformed or unknown session) or 403 (wrong operation)."""
        if auth is None:
            raise AuthRequired(await self._new_session(operation, user_id), stages)
        if not isinstance(auth, dict):
            raise BadRequest("auth must be an object", Codes.BAD_JSON)
        session = await self._session(auth.get("session"), operation, user_id)
        session_id = session.session_id if session else await self._new_session(operation, user_id)
        stage = auth.get("type")
        if stage is None:
            # Only asking for the session's progress.
            raise AuthRequired(session_id, stages)
        if stage not in stages:
            raise AuthRequired(
                session_id,
                stages,
                errcode=Codes.UNRECOGNIZED,
                message="Unrecognised authentication type",
            )
        try:
            await check(stage, auth)
        except StageFailed as e:
            raise AuthRequired(session_id, stages, errcode=e.errcode, message=e.message) from None
        # One stage completes every flow we offer; the session has done its job.
        await self._store.ui_auth.delete_session(session_id)

    async def authenticate_flow(
        self,
        operation: str,
        auth: Any,
        *,
        flow: Sequence[str],
        check: Callable[[str, dict[str, Any], str], Awaitable[None]],
        completed_stages: Callable[[str], Awaitable[set[str]]],
    ) -> str:
        """One flow of several stages: return the session ID once every stage of ``flow`` is
        complete. ``check(stage, auth, session_id)`` runs one stage and records it where
        ``completed_stages(session_id)`` finds it (the last stage need not be recorded)."""
        if auth is None:
            session_id = await self._new_session(operation, None)
            raise AuthRequired(session_id, flow, flows=[flow])
        if not isinstance(auth, dict):
            raise BadRequest("auth must be an object", Codes.BAD_JSON)
        session = await self._session(auth.get("session"), operation, None)
        session_id = session.session_id if session else await self._new_session(operation, None)
        done = await completed_stages(session_id)
        stage = auth.get("type")

        def progress(**error: str) -> AuthRequired:
            completed = [s for s in flow if s in done]
            return AuthRequired(session_id, flow, flows=[flow], completed=completed, **error)

        if stage is None:
            raise progress()
        if stage not in flow:
            raise progress(errcode=Codes.UNRECOGNIZED, message="Unrecognised authentication type")
        if stage not in done:
            try:
                await check(stage, auth, session_id)
            except StageFailed as e:
                raise progress(errcode=e.errcode, message=e.message) from None
            done = done | {stage}
        if not set(flow) <= done:
            raise progress()
        await self._store.ui_auth.delete_session(session_id)
        return session_id

    async def _new_session(self, operation: str, user_id: str | None) -> str:
        now = self._clock()
        session_id = secrets.token_urlsafe(18)
        await self._store.ui_auth.create_session(
            session_id, operation, user_id, now=now, expired_before=now - SESSION_LIFETIME_MS
        )
        return session_id

    async def _session(
        self, session_id: Any, operation: str, user_id: str | None
    ) -> UIAuthSession | None:
        if session_id is None:
            return None
        if not isinstance(session_id, str):
            raise BadRequest("auth.session must be a string", Codes.INVALID_PARAM)
        if "\x00" in session_id:
            # No session ID holds NUL, and PostgreSQL refuses it even in a look-up.
            raise BadRequest("Unknown session ID", Codes.UNKNOWN)
        session = await self._store.ui_auth.get_session(session_id)
        if session is None or session.created_ts < self._clock() - SESSION_LIFETIME_MS:
            raise BadRequest("Unknown session ID", Codes.UNKNOWN)
        if session.operation != operation or session.user_id != user_id:
            raise Forbidden("Requested operation has changed during the UI authentication session.")
        return session


async def accept_dummy(stage: str, auth: dict[str, Any]) -> None:
    """``m.login.dummy`` always passes."""
