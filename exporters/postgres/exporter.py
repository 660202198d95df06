"""The ``postgres`` exporter: batches → the ``spans`` table, durably, with bounded retries."""

from __future__ import annotations

import asyncio
import logging
import random
import time

from prometheus_client import Counter, Histogram

from tracetables.collector.batch import SpanBatch
from tracetables.collector.component import ExportResult, Host
from tracetables.collector.errors import PermanentError, RetryableError

from .config import PostgresExporterConfig
from .encoder import EncodedBatch, RowEncoder
from .roles import projected_by_table
from .schema import migrate
from .writer import SpanWriter

logger = logging.getLogger(__name__)


class PostgresExporter:
    """Writes each batch in one transaction over one of ``num_consumers`` connections.

    With no DSN configured it writes to the collector's store (``Host.store_dsn``: the
    embedded PostgreSQL, which the host starts and stops).
    """

    def __init__(self, config: PostgresExporterConfig, component_id: str = "postgres") -> None:
        self._config = config
        self._id = component_id
        self._commit_seconds: Histogram | None = None
        self._projected: Counter | None = None
        self._dsn = config.dsn
        self._idle: asyncio.Queue[SpanWriter] = asyncio.Queue()
        self._writers: list[SpanWriter] = []
        self._closing = asyncio.Event()
        self._unhealthy_since: float | None = None
        self._encoder = RowEncoder(config.encoding_workers)
        self.spans_written = 0
        self.transactions = 0

    @property
    def concurrency(self) -> int:
        """Batches that make progress at once: one per connection writing, plus one per
        encoding worker preparing the next (so encoding and writing overlap)."""
        return self._config.sending_queue.num_consumers + self._config.encoding_workers

    @property
    def unhealthy_since(self) -> float | None:
        """``time.monotonic()`` of the first failed write of the current outage; None
        while writes succeed (read by the ``health_check`` extension)."""
        return self._unhealthy_since

    @property
    def dsn(self) -> str:
        """The DSN in use (the embedded server's once started)."""
        return self._dsn

    async def start(self, host: Host) -> None:
        """Find the store and apply migrations.

        Raises:
            RetryableError: the database cannot be reached to migrate it.
        """
        if self._writers:
            return
        self._commit_seconds = host.telemetry.batch_commit_seconds.labels(self._id)
        self._projected = host.telemetry.projected_spans
        if not self._dsn:
            self._dsn = await host.store_dsn()
        if self._config.migrate_on_start:
            try:
                await asyncio.to_thread(migrate, self._dsn)
            except Exception as exc:  # psycopg.Error and OSError, surfaced at start-up
                raise RetryableError(f"cannot migrate the database: {type(exc).__name__}: {exc}") from exc
        await asyncio.to_thread(self._encoder.start)
        timeout = self._config.connect_timeout.total_seconds()
        for _ in range(self._config.sending_queue.num_consumers):
            writer = SpanWriter(self._dsn, timeout, self._config.projections)
            self._writers.append(writer)
            self._idle.put_nowait(writer)

    async def export(self, batch: SpanBatch) -> ExportResult:
        """Store a batch; returns once committed. See :class:`Exporter`."""
        encoded = await self._encoder.encode(batch)
        result = ExportResult()  # every span is storable: strings with NUL are escaped
        if not encoded.rows:
            return result
        writer = await self._idle.get()
        started = time.perf_counter()
        outcome = "error"
        try:
            written = await self._write_with_retry(writer, encoded)
            outcome = "ok"
            # Not `+= await …`: that reads the counter before the await and loses updates.
            self.spans_written += written
            self.transactions += 1
        finally:
            self._idle.put_nowait(writer)
            elapsed = time.perf_counter() - started
            if outcome == "ok" and self._commit_seconds is not None:
                self._commit_seconds.observe(elapsed)
            if outcome == "ok" and self._projected is not None and self._config.projections:
                for table, n in projected_by_table(encoded.keys).items():
                    self._projected.labels(self._id, table).inc(n)
            logger.debug(
                "batch spans=%d rows=%d latency_ms=%.1f outcome=%s",
                batch.span_count,
                encoded.rows,
                elapsed * 1000,
                outcome,
            )
        return result

    async def _write_with_retry(self, writer: SpanWriter, encoded: EncodedBatch) -> int:
        retry = self._config.retry_on_failure
        deadline = time.monotonic() + retry.max_elapsed_time.total_seconds()
        interval = retry.initial_interval.total_seconds()
        while True:
            try:
                written = await writer.write(encoded.data, encoded.rows, encoded.keys)
            except PermanentError:
                raise
            except RetryableError as exc:
                self._mark_unhealthy(str(exc))
                now = time.monotonic()
                if not retry.enabled or self._closing.is_set() or now >= deadline:
                    raise
                delay = min(interval * random.uniform(0.5, 1.5), deadline - now)
                interval = min(interval * 2, retry.max_interval.total_seconds())
                try:
                    await asyncio.wait_for(self._closing.wait(), timeout=delay)
                except TimeoutError:
                    pass
                continue
            self._mark_healthy()
            return written

    def _mark_unhealthy(self, reason: str) -> None:
        if self._unhealthy_since is None:
            self._unhealthy_since = time.monotonic()
            logger.error("database unreachable: %s; retrying", reason)

    def _mark_healthy(self) -> None:
        if self._unhealthy_since is not None:
            logger.info("database reachable again after %.1f s", time.monotonic() - self._unhealthy_since)
            self._unhealthy_since = None

    async def shutdown(self) -> None:
        """Close connections; safe to call twice."""
        self._closing.set()
        for writer in self._writers:
            await writer.close()
        self._writers.clear()
        await asyncio.to_thread(self._encoder.shutdown)
