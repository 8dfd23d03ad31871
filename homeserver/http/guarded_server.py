"""Connection-level limits on every listener: how long a client may take to send a request's
head and its body, and how many connections a listener keeps open at once.

aiohttp closes idle keep-alive connections (``keepalive_timeout``) but gives a client as long as
it likes to finish a request head or body, so a few hundred sockets trickling one byte a minute
(slowloris) would hold the server's file descriptors and memory for ever. Here:

* the head of a request (request line and headers) must arrive within ``header_timeout`` of the
  connection opening or of its first byte; otherwise the connection is closed. Between requests
  a keep-alive connection may idle for the same time (aiohttp's keep-alive timer).
* the body must arrive within ``body_timeout`` of the head; otherwise the handler reading it gets
  408 ``M_UNKNOWN`` and the connection is closed after that answer.
* past ``max_connections`` open connections, a new one is answered 503 and closed at once.

A request aiohttp cannot parse never reaches the middleware; its answer is made here, as Matrix
error JSON like every other: a request line past aiohttp's 8 KB limit 414 ``M_TOO_LARGE``, a
header past it 431 ``M_TOO_LARGE``, any other malformed request 400 ``M_UNKNOWN``.

:class:`GuardedAppRunner` is an ``aiohttp.web.AppRunner`` whose server makes
:class:`GuardedRequestHandler` protocols; sites (``web.TCPSite``) are used as usual.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

logger = logging.getLogger(__name__)

_REFUSAL_BODY = b'{"errcode":"M_LIMIT_EXCEEDED","error":"Too many open connections"}'
#: What a refused connection is told before it is closed.
_TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n"
    b"\r\n" + _REFUSAL_BODY
)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    #: seconds a request head may take (from connection open or its first byte).
    header_timeout: float
    #: seconds a request body may take after its head.
    body_timeout: float
    #: open connections per listener; more are refused.
    max_connections: int


class BodyTimeout(web.HTTPRequestTimeout):
    """Raised from ``request.read()`` when the body did not arrive in time; the error
    middleware turns it into 408 ``M_UNKNOWN`` like any HTTP error."""

    def __init__(self) -> None:
        super().__init__(reason="Request body not received in time")


class GuardedRequestHandler(RequestHandler):
    """aiohttp's HTTP/1 protocol with head and body deadlines (see the module docstring)."""

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = manager
        self._limits = manager.limits
        self._counted = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        #: the body of the newest request while it is still arriving.
        self._pending_body: Any = None

    # -- connections ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit():
            assert isinstance(transport, asyncio.Transport)
            transport.write(_TOO_MANY_CONNECTIONS)
            transport.close()
            return
        self._counted = True
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._counted:
            return  # refused: aiohttp never saw this connection
        self._counted = False
        self._guard.release()
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heads_before = self._request_count
        super().data_received(data)
        if self._request_count != heads_before:
            # At least one head is complete; only the newest request can still await its body.
            self._cancel_head_timer()
            self._cancel_body_timer()
            newest = self._messages[-1][1] if self._messages else None
            if newest is not None and not newest.is_eof():
                self._pending_body = newest
                self._body_timer = self._loop.call_later(
                    self._limits.body_timeout, self._body_timed_out
                )
            else:
                self._pending_body = None
        elif self._pending_body is not None:
            if self._pending_body.is_eof():
                self._pending_body = None
                self._cancel_body_timer()
        elif data and self._head_timer is None:
            self._arm_head_timer()  # the first bytes of another request's head

    # -- unparseable requests -------------------------------------------------------------------
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (or a fault outside the
        middleware), as Matrix error JSON instead of plain text. A client's malformed request
        is its own fault: logged at debug, not as a server error."""
        if status >= 500:
            logger.error("error handling a request from %s", request.remote, exc_info=exc)
        else:
            logger.debug("refused an unparseable request from %s: %s", request.remote, exc)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        status, errcode, error = matrix_error_for(status, exc)
        response = web.json_response({"errcode": errcode, "error": error}, status=status)
        response.force_close()
        return response

    # -- deadlines -----------------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        self._head_timer = self._loop.call_later(self._limits.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport is None:
            return
        if self._waiter is not None and not self._waiter.done():
            logger.debug("closing a connection whose request head did not arrive in time")
            self.force_close()
        else:
            # A pipelined head behind a request still being handled: give it its time after.
            self._arm_head_timer()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        body, self._pending_body = self._pending_body, None
        if body is None or body.is_eof() or self.transport is None:
            return
        if not self._request_in_progress:
            # Already answered without reading it all: aiohttp is draining the rest, and an
            # error raised into that drain would be logged as a server fault. Just close.
            logger.debug("a request body did not arrive in time after the answer; closing")
            self.force_close()
            return
        logger.debug("a request body did not arrive in time; answering 408 and closing")
        # No lingering read of the rest: the connection closes once the handler has answered.
        self._lingering_time = 0.0
        self._keepalive = False
        body.set_exception(BodyTimeout())

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        self._pending_body = None


def matrix_error_for(status: int, exc: BaseException | None) -> tuple[int, str, str]:
    """(status, errcode, error) for a request aiohttp refused before any handler ran."""
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else b""
        start = bytes(line[:4]) if isinstance(line, bytes | bytearray) else b""
        # The parser names the start of what was too long: a request target or a header.
        if start[:1] in (b"/", b"*") or start == b"http":
            return 414, "M_TOO_LARGE", "Request line too long"
        return 431, "M_TOO_LARGE", "Request header too large"
    if status >= 500:
        return 500, "M_UNKNOWN", "Internal server error"
    return status if 400 <= status < 500 else 400, "M_UNKNOWN", "Malformed HTTP request"


class GuardedServer(web.Server):
    """aiohttp's connection manager, making guarded protocols and counting connections."""

    def __init__(self, handler: Any, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.open_count = 0
        #: whether connections are being refused (logged once per episode, not per refusal:
        #: a flood must not flood the log too).
        self._refusing = False

    def admit(self) -> bool:
        if self.open_count >= self.limits.max_connections:
            if not self._refusing:
                self._refusing = True
                logger.warning(
                    "%d connections open (max_connections): refusing new ones with 503",
                    self.open_count,
                )
            return False
        self.open_count += 1
        return True

    def release(self) -> None:
        self.open_count -= 1
        if self._refusing:
            self._refusing = False
            logger.info("accepting connections again")

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connections obey ``limits``. aiohttp's keep-alive timeout (idle
    time between requests) is set to the head timeout: waiting for the next head is waiting
    for a head."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=limits.header_timeout, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            limits=self._limits,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **self._kwargs,
        )
