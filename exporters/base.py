"""What every exporter offers the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tracetables.collector.batch import SpanBatch


@dataclass(slots=True)
class ExportResult:
    """The outcome of a successful export.

    Attributes:
        rejected: per ``ResourceSpans`` index of the batch, spans refused for good
            (the rest were stored); empty when all were stored.
        reason: why the first refused span was refused, safe to send to a client.
    """

    rejected: dict[int, int] = field(default_factory=dict)
    reason: str = ""


class Exporter(Protocol):
    """Writes batches somewhere durable (or, for ``debug``, to the log)."""

    @property
    def concurrency(self) -> int:
        """How many ``export`` calls make progress at once (e.g. connections)."""
        ...

    async def start(self) -> None:
        """Connect and prepare; raises if the destination cannot be used at all."""

    async def export(self, batch: SpanBatch) -> ExportResult:
        """Write a batch; returns when it is durable.

        The exporter only reads the batch. Raises ``RetryableError`` when the same
        batch may succeed later, ``PermanentError`` when it cannot.
        """

    async def shutdown(self) -> None:
        """Release resources; safe to call twice or before ``start``."""
