"""Retention: traces past their flow's ``tracing_config.retention_days`` are deleted.

The rule is in SQL (``tt_expire``, migration 0006 of the postgres exporter); this runs it on a
timer, off the write path: every ``check_interval``, transactions of at most
``max_traces_per_transaction`` traces each until no expired trace is left, on a
connection of its own. An unreachable database is logged once and tried again at the
next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from ..errors import ConfigError
from ..periodic import Periodic

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """``extensions.tracing_config.retention``: deleting traces past their flow's
    ``tracing_config.retention_days``."""

    check_interval: timedelta = timedelta(hours=1)
    """How often to look for expired traces; 0 turns retention off."""
    max_traces_per_transaction: int = 200
    """Traces deleted per transaction (each takes the per-trace locks the ingest takes)."""

    def validate(self, path: str) -> None:
        if self.check_interval < timedelta(0):
            raise ConfigError(f"{path}.check_interval: must be >= 0 (0 turns retention off)")
        if not 1 <= self.max_traces_per_transaction <= 10_000:
            raise ConfigError(
                f"{path}.max_traces_per_transaction: must be between 1 and 10000, got {self.max_traces_per_transaction}"
            )


class RetentionJob:
    """Deletes expired traces every ``check_interval`` (see the module docstring).

    Attributes:
        expired_traces: traces deleted since start.
    """

    def __init__(self, config: RetentionConfig, dsn: Callable[[], str], connect_timeout: float) -> None:
        self._config = config
        self._dsn = dsn
        self._timeout = connect_timeout
        self._periodic = Periodic("postgres retention", config.check_interval.total_seconds(), self.run_once)
        self._failing = False
        self.expired_traces = 0

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def run_once(self) -> int:
        """Delete every expired trace now; returns how many (0 when the database is unreachable)."""
        limit = self._config.max_traces_per_transaction
        deleted = 0
        try:
            async with await psycopg.AsyncConnection.connect(
                self._dsn(), autocommit=True, connect_timeout=max(1, round(self._timeout))
            ) as conn:
                while True:
                    row = await (await conn.execute("SELECT tt_expire(%s)", (limit,))).fetchone()
                    done = int(row[0]) if row else 0
                    deleted += done
                    if done < limit:
                        break
        except (psycopg.Error, OSError) as exc:
            if not self._failing:
                logger.warning(
                    "retention: cannot reach the database (%s); trying again in %s",
                    type(exc).__name__,
                    self._config.check_interval,
                )
                self._failing = True
            return deleted
        self._failing = False
        if deleted:
            logger.info("retention: deleted %d expired traces", deleted)
        self.expired_traces += deleted
        return deleted
