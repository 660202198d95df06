"""Connection deadlines and the connection cap of the OTLP/HTTP receiver.

aiohttp reads a request's headers for as long as the client takes, and keeps a
connection that never sends a byte until its keep-alive timer fires. Each accepted
connection's protocol is therefore wrapped in a :class:`_Guarded` proxy that knows when
bytes arrive and (through :meth:`ConnectionGuard.middleware`) when a request is being
handled, and one sweep a second closes:

- a connection whose request headers are not complete ``read_header_timeout`` after its
  first byte (a fresh connection counts from its accept, as Go's ``net/http`` does);
- a connection with no request under way and no byte received for ``idle_timeout``.

Beyond ``max_concurrent_connections`` open connections, a new one gets a ``503`` with
``Connection: close`` and is closed. Each closing is counted by reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..telemetry import Telemetry

logger = logging.getLogger(__name__)

REFUSED_REPLY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Connection: close\r\n"
    b"Retry-After: 1\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 27\r\n"
    b"\r\n"
    b"too many open connections\r\n"
)
CLOSE_REASONS = ("header_timeout", "idle_timeout", "over_limit")
"""The ``reason`` label values of ``tracetables_receiver_closed_connections``."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Guarded(asyncio.Protocol):
    """Forwards every protocol call to aiohttp's handler, noting when bytes and requests come."""

    __slots__ = ("_guard", "_inner", "admitted", "busy", "header_since", "idle_since", "transport")

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self.transport: asyncio.Transport | None = None
        self.admitted = False  # handed to aiohttp (not refused over the cap)
        self.busy = 0  # requests under way
        now = time.monotonic()
        self.header_since: float | None = now  # a fresh connection's first request is due
        self.idle_since = now

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self._guard.admit(self):
            transport.write(REFUSED_REPLY)
            transport.close()
            return
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.forget(self)
        if self.admitted:
            self._inner.connection_lost(exc)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.idle_since = now
        if self.header_since is None and not self.busy:
            self.header_since = now  # the next request's headers have begun
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def request_began(self) -> None:
        self.busy += 1
        self.header_since = None

    def request_ended(self) -> None:
        self.busy -= 1
        self.idle_since = time.monotonic()


class ConnectionGuard:
    """The deadlines and the cap of one HTTP server's connections.

    Args:
        read_header_timeout: seconds for a request's headers to arrive; 0 means no limit.
        idle_timeout: seconds a connection may stay silent between requests; 0 means no limit.
        max_connections: open connections at most; 0 means no limit.
        labels: ``(receiver, transport)`` of the metrics.
    """

    def __init__(
        self, read_header_timeout: float, idle_timeout: float, max_connections: int, labels: tuple[str, str]
    ) -> None:
        self.read_header_timeout = read_header_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.telemetry: Telemetry | None = None
        self.closed = dict.fromkeys(CLOSE_REASONS, 0)
        self._labels = labels
        self._open: dict[asyncio.Transport, _Guarded] = {}
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def protocol_factory(self, make_inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """Wrap aiohttp's protocol factory (``runner.server``)."""
        return lambda: _Guarded(self, make_inner())

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the request's connection busy while it is handled (its headers are complete)."""
        transport = request.transport
        connection = self._open.get(transport) if isinstance(transport, asyncio.Transport) else None
        if connection is None:
            return await handler(request)
        connection.request_began()
        try:
            return await handler(request)
        finally:
            connection.request_ended()

    def admit(self, connection: _Guarded) -> bool:
        if self.max_connections and len(self._open) >= self.max_connections:
            self._count("over_limit")
            return False
        assert connection.transport is not None
        connection.admitted = True
        self._open[connection.transport] = connection
        self._gauge()
        return True

    def forget(self, connection: _Guarded) -> None:
        """Drop a closed connection (the sweep may have dropped it already)."""
        if connection.transport is not None and self._open.pop(connection.transport, None) is not None:
            self._gauge()

    def start(self) -> None:
        if self._sweeper is None and (self.read_header_timeout or self.idle_timeout):
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="http-connection-sweep")

    async def stop(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)

    def sweep(self, now: float) -> None:
        """Close every connection past a deadline at ``now`` (``time.monotonic()``)."""
        header, idle = self.read_header_timeout, self.idle_timeout
        for transport, connection in list(self._open.items()):
            if connection.busy:
                continue
            if header and connection.header_since is not None and now - connection.header_since > header:
                reason = "header_timeout"
            elif idle and connection.header_since is None and now - connection.idle_since > idle:
                reason = "idle_timeout"
            else:
                continue
            self._count(reason)
            self._open.pop(transport, None)
            self._gauge()
            transport.abort()  # nothing of ours is left to write; free the socket now

    async def _sweep_forever(self) -> None:
        deadlines = [t for t in (self.read_header_timeout, self.idle_timeout) if t]
        interval = min(1.0, min(deadlines) / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep(time.monotonic())
            except Exception:  # a sweep must never end the loop that guards the server
                logger.exception("connection sweep failed")

    def _count(self, reason: str) -> None:
        self.closed[reason] += 1
        if self.telemetry is not None:
            self.telemetry.receiver_closed_connections.labels(*self._labels, reason).inc()

    def _gauge(self) -> None:
        if self.telemetry is not None:
            self.telemetry.receiver_open_connections.labels(*self._labels).set(len(self._open))
