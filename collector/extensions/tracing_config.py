"""The ``tracing_config`` extension: per-flow tracing settings, read from the store.

One row of the ``tracing_config`` table per flow: ``enabled``, ``level`` and
``retention_days``. The ``trace_level`` processor reads a flow's ``enabled`` and
``level`` here on every batch; the extension's retention job applies ``retention_days``
(see :mod:`.retention`), so one component owns the flow settings.
The table is read at start and every ``refresh_interval`` after, so a change takes
effect without a restart; while the database cannot be read, the last settings read
stay in force (logged once).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg

from ..component import Host
from ..errors import ConfigError
from ..periodic import Periodic
from .retention import RetentionConfig, RetentionJob

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TracingConfigExtensionConfig:
    """``extensions.tracing_config``."""

    dsn: str = ""
    """The database holding ``tracing_config``; empty: the collector's store."""
    refresh_interval: timedelta = timedelta(seconds=5)
    """How often the table is read again."""
    connect_timeout: timedelta = timedelta(seconds=5)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    def validate(self, path: str) -> None:
        if self.refresh_interval <= timedelta(0):
            raise ConfigError(f"{path}.refresh_interval: must be > 0")
        if self.connect_timeout <= timedelta(0):
            raise ConfigError(f"{path}.connect_timeout: must be > 0")


@dataclass(frozen=True, slots=True)
class FlowSetting:
    """One ``tracing_config`` row."""

    enabled: bool
    level: str
    retention_days: int | None = None


class TracingConfigExtension:
    """Holds the flow settings last read; see the module docstring.

    Attributes:
        flows: flow id → its setting, replaced whole on each successful read.
        reads: successful reads since start.
        retention: the job deleting traces past their flow's ``retention_days``.
    """

    def __init__(self, config: TracingConfigExtensionConfig) -> None:
        self._config = config
        self._dsn = config.dsn
        self._periodic = Periodic("tracing_config refresh", config.refresh_interval.total_seconds(), self.refresh)
        self._failing = False
        self.flows: Mapping[str, FlowSetting] = {}
        self.reads = 0
        self.retention = RetentionJob(config.retention, lambda: self._dsn, config.connect_timeout.total_seconds())

    async def start(self, host: Host) -> None:
        """Read the table once (a failure is logged; the defaults hold), then keep reading."""
        if not self._dsn:
            self._dsn = await host.store_dsn()
        await self.refresh()
        self._periodic.start()
        self.retention.start()

    async def shutdown(self) -> None:
        """Stop reading and expiring; safe twice."""
        await self.retention.stop()
        await self._periodic.stop()

    def use_dsn(self, dsn: str) -> None:
        """Read another database from the next refresh on (tests, and a moved store)."""
        self._dsn = dsn

    async def refresh(self) -> None:
        """Read ``tracing_config`` again (errors keep the last settings, logged once)."""
        if not self._dsn:
            return
        timeout = max(1, round(self._config.connect_timeout.total_seconds()))
        try:
            async with await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=timeout
            ) as conn:
                cur = await conn.execute("SELECT flow_id, enabled, level, retention_days FROM tracing_config")
                rows = await cur.fetchall()
        except (psycopg.Error, OSError) as exc:
            if not self._failing:
                logger.warning("cannot read tracing_config (%s); keeping the last settings", type(exc).__name__)
                self._failing = True
            return
        if self._failing:
            logger.info("tracing_config readable again")
            self._failing = False
        self.flows = {str(f): FlowSetting(bool(e), str(lv), None if d is None else int(d)) for f, e, lv, d in rows}
        self.reads += 1
