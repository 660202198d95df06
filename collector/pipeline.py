"""Pipelines: processors, then the batch processor, then a fan-out to exporters.

Built from ``service.pipelines``. Started downstream first (exporters, then receivers) and
stopped upstream first (receivers, then batchers, then exporters), so every stage drains
into a live consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from . import batch as _batch
from .batch import SpanBatch
from .component import Exporter, ExportResult, Processor
from .consumer import ConsumeResult
from .processors.batch import BatchProcessor
from .processors.config import BatchProcessorConfig
from .telemetry import Telemetry


class Pipeline:
    """One ``traces`` pipeline; a :class:`Consumer` for its receivers."""

    def __init__(
        self,
        name: str,
        processors: Sequence[Processor],
        batch: BatchProcessorConfig | None,
        exporters: Sequence[Exporter],
        telemetry: Telemetry | None = None,
        processor_ids: Sequence[str] = (),
        exporter_ids: Sequence[str] = (),
    ) -> None:
        """Args:
        telemetry: where the per-processor and per-exporter span counts go; with
            ``processor_ids`` and ``exporter_ids`` (same order) naming the components.
        """
        self.name = name
        self._processors = list(processors)
        self._exporters = list(exporters)
        self._telemetry = telemetry
        self._processor_ids = list(processor_ids) or [type(p).__name__ for p in self._processors]
        self._exporter_ids = list(exporter_ids) or [type(e).__name__ for e in self._exporters]
        writers = min(exporter.concurrency for exporter in self._exporters)
        self._batcher = BatchProcessor(batch, self._export, writers) if batch is not None else None

    async def consume(self, batch: SpanBatch) -> ConsumeResult:
        """Run the processors, then batch and export; returns when durable."""
        self.admit(batch.span_count)
        t = self._telemetry
        for pid, processor in zip(self._processor_ids, self._processors, strict=True):
            if t is not None:
                t.processor_incoming.labels(pid).inc(batch.span_count)
            batch = processor(batch)
            if _batch.check_encoded:
                batch.verify(f"processor {pid!r}")
            if t is not None:
                t.processor_outgoing.labels(pid).inc(batch.span_count)
        if self._batcher is not None:
            return await self._batcher.consume(batch)
        result = await self._export(batch)
        rejected = sum(result.rejected.values())
        return ConsumeResult(rejected, result.reason if rejected else "")

    def admit(self, spans: int) -> None:
        """Raise ``OverloadedError`` if the batch processor would refuse ``spans`` now:
        asked before any processor runs, since under overload most requests are refused
        and processing them first would spend the time the accepted ones need."""
        if self._batcher is not None:
            self._batcher.admit(spans)

    @property
    def queued_spans(self) -> int:
        """Spans accepted by the batch processor and not yet committed."""
        return self._batcher.queued_spans if self._batcher is not None else 0

    async def _export_one(self, eid: str, exporter: Exporter, batch: SpanBatch) -> ExportResult:
        t = self._telemetry
        try:
            result = await exporter.export(batch)
        except BaseException:
            if t is not None:
                t.exporter_failed.labels(eid).inc(batch.span_count)
            raise
        if t is not None:
            t.exporter_sent.labels(eid).inc(batch.span_count - sum(result.rejected.values()))
        return result

    async def _export(self, batch: SpanBatch) -> ExportResult:
        pairs = list(zip(self._exporter_ids, self._exporters, strict=True))
        if len(pairs) == 1:
            return await self._export_one(*pairs[0], batch)
        results = await asyncio.gather(*(self._export_one(eid, exporter, batch) for eid, exporter in pairs))
        combined = ExportResult()
        for result in results:
            for index, count in result.rejected.items():
                combined.rejected[index] = max(count, combined.rejected.get(index, 0))
            combined.reason = combined.reason or result.reason
        return combined

    def drain(self) -> None:
        """Stop holding requests back for batching (shutdown has begun)."""
        if self._batcher is not None:
            self._batcher.drain()

    async def shutdown(self) -> None:
        """Export what the batch processor holds; safe to call twice."""
        if self._batcher is not None:
            await self._batcher.shutdown()


class FanOut:
    """Feeds one receiver's batches to several pipelines, each its own copy."""

    def __init__(self, pipelines: Sequence[Pipeline]) -> None:
        self._pipelines = list(pipelines)

    async def consume(self, batch: SpanBatch) -> ConsumeResult:
        """Consume in every pipeline; the result is the worst of theirs. A request one
        pipeline would refuse goes to none (a retry would store it twice in the others)."""
        if len(self._pipelines) == 1:
            return await self._pipelines[0].consume(batch)
        for pipeline in self._pipelines:
            pipeline.admit(batch.span_count)
        copies = [batch] + [batch.copy() for _ in self._pipelines[1:]]
        results = await asyncio.gather(*(p.consume(b) for p, b in zip(self._pipelines, copies, strict=True)))
        worst = max(results, key=lambda r: r.rejected_spans)
        return worst

    def admit(self, spans: int) -> None:
        """Raise ``OverloadedError`` if any pipeline would refuse ``spans`` now."""
        for pipeline in self._pipelines:
            pipeline.admit(spans)
