"""The ``health_check`` extension: an HTTP probe for load balancers and orchestrators.

GET ``path`` answers 200 ``{"status": "ok", ...}`` while every component is started and
the store answers ``SELECT 1``; otherwise 503 with the reason (``starting``,
``stopping``, or the store's error class). Probes never open a connection each: one
check runs at a time and its answer is reused for ``check_interval``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from aiohttp import web

from ..component import Host
from ..errors import ConfigError
from ..http_endpoint import HttpEndpoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    """``extensions.health_check``."""

    endpoint: str = "127.0.0.1:13133"
    path: str = "/"
    check_interval: timedelta = timedelta(seconds=1)
    """How long one store check answers the probes that follow it."""
    connect_timeout: timedelta = timedelta(seconds=2)

    def validate(self, path: str) -> None:
        _, sep, port = self.endpoint.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"{path}.endpoint: expected host:port, got {self.endpoint!r}")
        if not self.path.startswith("/"):
            raise ConfigError(f"{path}.path: must start with '/', got {self.path!r}")
        if self.check_interval <= timedelta(0):
            raise ConfigError(f"{path}.check_interval: must be > 0")
        if self.connect_timeout <= timedelta(0):
            raise ConfigError(f"{path}.connect_timeout: must be > 0")


class HealthCheckExtension:
    """Serves the probe; see the module docstring.

    Attributes:
        port: the bound port once started.
        store_checks: store checks run since start (each probe does not run one).
    """

    def __init__(self, config: HealthCheckConfig) -> None:
        self._config = config
        self._host: Host | None = None
        self._dsn = ""
        self._server = HttpEndpoint(config.endpoint, config.path, self._probe)
        self._lock = asyncio.Lock()
        self._checked_at = float("-inf")
        self._store_error: str | None = None
        self.store_checks = 0

    @property
    def port(self) -> int:
        """The bound port (0 before start)."""
        return self._server.port

    async def start(self, host: Host) -> None:
        """Find the store and listen.

        Raises:
            ConfigError: the endpoint cannot be bound.
        """
        self._host = host
        self._dsn = await host.store_dsn()
        try:
            await self._server.start()
        except OSError as exc:
            raise ConfigError(
                f"extensions.health_check.endpoint: cannot listen on {self._config.endpoint}: {exc}"
            ) from exc
        logger.info("health check on %s%s (port %d)", self._config.endpoint, self._config.path, self.port)

    async def shutdown(self) -> None:
        """Stop listening; safe twice."""
        await self._server.shutdown()

    async def _probe(self, request: web.Request) -> web.Response:
        assert self._host is not None, "the server runs only after start"
        status = self._host.status()
        body: dict[str, object] = {"pipelines": list(status.pipelines)}
        if status.state != "running":
            return _answer(503, {"status": status.state, **body})
        error = await self._store_problem()
        if error is not None:
            return _answer(503, {"status": "unavailable", **body, "store": "unreachable", "error": error})
        return _answer(200, {"status": "ok", **body, "store": "reachable"})

    async def _store_problem(self) -> str | None:
        """The error class of the last store check, None if it answered; rechecks at
        most once per ``check_interval``, whatever the probe rate."""
        async with self._lock:
            if time.monotonic() - self._checked_at < self._config.check_interval.total_seconds():
                return self._store_error
            timeout = max(2, round(self._config.connect_timeout.total_seconds()))  # libpq's minimum is 2
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, connect_timeout=timeout
                ) as conn:
                    await conn.execute("SELECT 1")
                self._store_error = None
            except (psycopg.Error, OSError) as exc:
                self._store_error = type(exc).__name__
            self.store_checks += 1
            self._checked_at = time.monotonic()
            return self._store_error


def _answer(status: int, body: dict[str, object]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")
