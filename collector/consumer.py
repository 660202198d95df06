"""The one verb between stages: ``consume`` a batch, learn what was refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .batch import SpanBatch


@dataclass(frozen=True, slots=True)
class ConsumeResult:
    """What became of a batch whose ``consume`` returned (so: it is durable).

    Attributes:
        rejected_spans: spans refused for good; the others are stored.
        message: why, safe to send to a client.
    """

    rejected_spans: int = 0
    message: str = ""


class Consumer(Protocol):
    """A stage that takes batches; the receiver's view of the pipeline."""

    async def consume(self, batch: SpanBatch) -> ConsumeResult:
        """Take a batch and return once it is durable.

        The consumer owns the batch from the call on. Raises ``RetryableError``
        (including ``OverloadedError``) or ``PermanentError``.
        """
        ...

    def admit(self, spans: int) -> None:
        """Raise ``OverloadedError`` if a request of ``spans`` spans would be refused now.

        ``admit(0)`` asks whether any request would be: receivers ask it before decoding,
        so under overload a refusal costs no parsing; ``consume`` still asks again.
        """
        ...
