"""The ``batch`` processor: group requests into one export, acknowledge each on commit.

This is a group commit. While a writer is idle, a request is exported on the next turn
of the event loop (with whatever arrived in the same turn): waiting would only add
latency, since the client is blocked until the commit. While every writer is busy,
requests gather, and the first writer to free up takes them all in one transaction —
so batches grow exactly when load does. ``send_batch_size`` and ``timeout`` cap the
gathering: past either, a batch is cut and queued for the next free writer.

The number of spans buffered or being written is bounded, and so is the time the queue
ahead of a request would take to write (``max_queue_wait``, at the rate exports have
committed); past either bound new requests are refused at once with
:class:`OverloadedError`, before any work is done for them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ..batch import SpanBatch
from ..component import ExportResult
from ..consumer import ConsumeResult
from ..errors import OverloadedError, PermanentError, RetryableError
from .config import BatchProcessorConfig

logger = logging.getLogger(__name__)

ExportFn = Callable[[SpanBatch], Awaitable[ExportResult]]


class BatchProcessor:
    """Buffers batches and hands merged ones to ``export``.

    Args:
        config: sizes and timeout.
        export: writes a merged batch; raises ``RetryableError`` / ``PermanentError``.
        writers: how many exports can run at once downstream (connections).
    """

    def __init__(self, config: BatchProcessorConfig, export: ExportFn, writers: int = 1) -> None:
        self._config = config
        self._export = export
        self._writers = max(1, writers)
        self._in_flight = 0
        self._soon: asyncio.Handle | None = None
        self._pending: list[tuple[SpanBatch, asyncio.Future[ConsumeResult]]] = []
        self._pending_spans = 0
        self._queued_spans = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._overloaded = False
        self._draining = False
        self._rate: float | None = None  # committed spans per second per writer

    @property
    def queued_spans(self) -> int:
        """Spans accepted and not yet committed."""
        return self._queued_spans

    async def consume(self, batch: SpanBatch) -> ConsumeResult:
        """Buffer a batch; return when it is committed. See :class:`Consumer`."""
        size = batch.span_count
        if size == 0:
            return ConsumeResult()
        self.admit(size)
        future: asyncio.Future[ConsumeResult] = asyncio.get_running_loop().create_future()
        self._pending.append((batch, future))
        self._pending_spans += size
        self._queued_spans += size
        if self._draining or self._pending_spans >= self._config.send_batch_size:
            self._flush()
        elif self._in_flight < self._writers:
            if self._soon is None:
                self._soon = asyncio.get_running_loop().call_soon(self._flush)
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._config.timeout.total_seconds(), self._flush)
        try:
            return await asyncio.shield(future)
        finally:
            self._queued_spans -= size

    def admit(self, size: int) -> None:
        """Raise :class:`OverloadedError` if a request of ``size`` spans is to be refused
        now: past ``max_queued_spans``, or when the queue ahead would take longer than
        ``max_queue_wait`` to write. The pipeline asks before its processors run, so a
        refused request costs no processing; :meth:`consume` asks again."""
        if self._queued_spans and self._queued_spans + size > self._config.max_queued_spans:
            if not self._overloaded:
                self._overloaded = True
                logger.warning("batch queue full (%d spans queued): refusing requests", self._queued_spans)
            raise OverloadedError("the collector is busy: too many spans queued", retry_after=1.0)
        wait = self._expected_wait()
        if wait is not None:
            if not self._overloaded:
                self._overloaded = True
                logger.warning("batch queue would take %.1f s to write: refusing requests", wait)
            raise OverloadedError(
                f"the collector is busy: the queue ahead would take {wait:.1f} s to write",
                retry_after=max(1.0, min(wait, 30.0)),
            )
        if self._overloaded:
            self._overloaded = False
            logger.info("batch queue has room again")

    def _expected_wait(self) -> float | None:
        """Seconds the queue ahead would take to write, when that is over ``max_queue_wait``.

        The rate is a moving average of committed spans per second per writer, learnt
        from the exports themselves; until one has been measured nothing is refused by
        time. One batch's worth queued ahead is always admitted: it is a single write.
        """
        budget = self._config.max_queue_wait.total_seconds()
        if not budget or self._rate is None or self._queued_spans <= self._config.send_batch_size:
            return None
        wait = self._queued_spans / (self._rate * self._writers)
        return wait if wait > budget else None

    def _learn_rate(self, spans: int, seconds: float) -> None:
        # Only batches near full size tell the rate under load: a small one is mostly the
        # commit's fixed cost, and learning from it would refuse the first burst wrongly.
        if spans < max(1, self._config.send_batch_size // 4) or seconds <= 0:
            return
        sample = spans / seconds
        self._rate = sample if self._rate is None else 0.8 * self._rate + 0.2 * sample

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        limit = self._config.send_batch_max_size
        while self._pending:
            parts = self._take(limit)
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._send(parts))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self, limit: int) -> list[tuple[SpanBatch, asyncio.Future[ConsumeResult]]]:
        if not limit:
            parts, self._pending = self._pending, []
            self._pending_spans = 0
            return parts
        taken = 0
        count = 0
        for batch, _ in self._pending:
            if count and taken + batch.span_count > limit:
                break
            taken += batch.span_count
            count += 1
        parts, self._pending = self._pending[:count], self._pending[count:]
        self._pending_spans -= taken
        return parts

    async def _send(self, parts: list[tuple[SpanBatch, asyncio.Future[ConsumeResult]]]) -> None:
        try:
            await self._send_parts(parts)
        finally:
            self._in_flight -= 1
            if self._pending and self._in_flight < self._writers and self._soon is None:
                # A writer is free: what gathered meanwhile goes now, as one batch.
                self._soon = asyncio.get_running_loop().call_soon(self._flush)

    async def _send_parts(self, parts: list[tuple[SpanBatch, asyncio.Future[ConsumeResult]]]) -> None:
        merged = SpanBatch.merge([batch for batch, _ in parts])
        started = time.monotonic()
        try:
            result = await self._export(merged)
        except RetryableError as exc:  # about the store, not the data: every request may retry
            for _, future in parts:
                _settle(future, exc)
            return
        except Exception as exc:  # the data refused, or a failure that is not the store's
            if len(parts) > 1:
                # One request's content must not sink the others sharing its transaction.
                logger.warning(
                    "a merged batch of %d requests failed (%s); writing them one by one", len(parts), type(exc).__name__
                )
                await asyncio.gather(*(self._send_parts([part]) for part in parts))
                return
            if not isinstance(exc, PermanentError):
                # A bug met by this request's data: its own answer, never its content in the log.
                batch = parts[0][0]
                logger.error(
                    "a request of %d spans in %d resource groups could not be stored: %s",
                    batch.span_count,
                    len(batch.resource_spans),
                    type(exc).__name__,
                )
                exc = PermanentError(f"the request could not be stored ({type(exc).__name__})")
            _settle(parts[0][1], exc)
            return
        self._learn_rate(merged.span_count, time.monotonic() - started)
        start = 0
        for batch, future in parts:
            end = start + len(batch.resource_spans)
            rejected = sum(n for i, n in result.rejected.items() if start <= i < end)
            _settle(future, ConsumeResult(rejected, result.reason if rejected else ""))
            start = end

    def drain(self) -> None:
        """From now on export at once, without waiting for ``timeout``: shutdown has begun,
        and requests still arriving should not wait for company that will not come."""
        self._draining = True
        if self._pending:
            self._flush()

    async def shutdown(self) -> None:
        """Export what is buffered and wait for every export under way; safe twice."""
        self.drain()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _settle(future: asyncio.Future[ConsumeResult], outcome: ConsumeResult | BaseException) -> None:
    if future.done():  # the request gave up waiting; its spans are written all the same
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
