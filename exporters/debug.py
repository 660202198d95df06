"""The ``debug`` exporter: a log line per batch, or per span with ``detailed``.

It logs counts, names and ids, never attribute values: those may be personal data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tracetables.collector.batch import SpanBatch
from tracetables.collector.component import ExportResult, Host
from tracetables.collector.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DebugExporterConfig:
    """``exporters.debug``: logs one line per batch (``basic``) or per span (``detailed``)."""

    verbosity: str = "basic"

    def validate(self, path: str) -> None:
        if self.verbosity not in ("basic", "normal", "detailed"):
            raise ConfigError(f"{path}.verbosity: must be basic, normal or detailed, got {self.verbosity!r}")


class DebugExporter:
    """Logs a summary of each batch."""

    def __init__(self, config: DebugExporterConfig) -> None:
        self._config = config
        self.batches = 0
        self.spans = 0

    @property
    def concurrency(self) -> int:
        """Logging never waits: any number at once."""
        return 64

    async def start(self, host: Host) -> None:
        """Nothing to prepare."""

    async def export(self, batch: SpanBatch) -> ExportResult:
        """Log the batch; never fails."""
        self.batches += 1
        self.spans += batch.span_count
        logger.info("debug exporter: %d resource spans, %d spans", len(batch.resource_spans), batch.span_count)
        if self._config.verbosity == "detailed":
            for rs in batch.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        logger.info(
                            "span trace_id=%s span_id=%s name=%r kind=%d attributes=%d",
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.name,
                            span.kind,
                            len(span.attributes),
                        )
        return ExportResult()

    async def shutdown(self) -> None:
        """Nothing to release."""
