"""Retention: traces past their flow's ``tracing_config.retention_days`` are deleted.

The rule is in SQL (``tt_expire`` in ``migrations/0006_retention.sql``); this runs it on a
timer, off the write path: every ``check_interval``, transactions of at most
``max_traces_per_transaction`` traces each until no expired trace is left, on a
connection of its own. An unreachable database is logged once and tried again at the
next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg
from tracetables.collector.periodic import Periodic

from .config import RetentionConfig

logger = logging.getLogger(__name__)


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
            async with await psycopg.AsyncConnection.connect(self._dsn(), autocommit=True,
                                                            connect_timeout=max(1, round(self._timeout))) as conn:
                while True:
                    row = await (await conn.execute("SELECT tt_expire(%s)", (limit,))).fetchone()
                    done = int(row[0]) if row else 0
                    deleted += done
                    if done < limit:
                        break
        except (psycopg.Error, OSError) as exc:
            if not self._failing:
                logger.warning("retention: cannot reach the database (%s); trying again in %s",
                               type(exc).__name__, self._config.check_interval)
                self._failing = True
            return deleted
        self._failing = False
        if deleted:
            logger.info("retention: deleted %d expired traces", deleted)
        self.expired_traces += deleted
        return deleted
