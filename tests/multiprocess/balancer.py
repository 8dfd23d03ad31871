"""A round-robin TCP load balancer for tests, in a thread of its own (so it keeps serving while
the tests' own event loops come and go).

Each new connection goes to the next backend in turn; a backend that refuses the connection is
skipped for that connection (HAProxy's ``option redispatch``), and a backend taken out with
:meth:`TcpBalancer.drain` gets no new connection (an operator draining it). It works below TLS,
so the federation listeners' certificates pass through untouched: a peer sees one address, the
server name's, whichever process answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter

from tests.real_clients.server_process import free_port

_CONNECT_TIMEOUT = 2.0


class TcpBalancer:
    def __init__(self, backends: list[int], port: int | None = None) -> None:
        self.backends = list(backends)
        self.port = port if port is not None else free_port()
        #: backend index → connections handed to it
        self.connections: Counter[int] = Counter()
        self._drained: set[int] = set()
        self._next = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- control (from any thread) ------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"balancer-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def drain(self, index: int) -> None:
        with self._lock:
            self._drained.add(index)

    def undrain(self, index: int) -> None:
        with self._lock:
            self._drained.discard(index)

    # --- the proxy ------------------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", self.port)
            )
        except BaseException as e:  # handed to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def _order(self) -> list[int]:
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self.backends)
            drained = set(self._drained)
        order = [(start + i) % len(self.backends) for i in range(len(self.backends))]
        return [i for i in order if i not in drained]

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for index in self._order():
            try:
                upstream = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.backends[index]), _CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError):
                continue
            with self._lock:
                self.connections[index] += 1
            break
        if upstream is None:
            client_w.close()
            return
        server_r, server_w = upstream
        await asyncio.gather(
            _pipe(client_r, server_w), _pipe(server_r, client_w), return_exceptions=True
        )
        for writer in (server_w, client_w):
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the half-close on."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, asyncio.IncompleteReadError):
        writer.close()
