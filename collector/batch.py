"""SpanBatch: the one batch type that flows from receivers through processors to exporters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

TraceId: TypeAlias = bytes
"""16 bytes, the OTLP trace id."""
SpanId: TypeAlias = bytes
"""8 bytes, the OTLP span id."""


@dataclass(slots=True)
class SpanBatch:
    """Spans in their OTLP protobuf shape, grouped by resource and scope as received.

    The batch owns its messages: a processor may change them in place and return the
    same batch, and nothing upstream looks at them again once handed on.

    Attributes:
        resource_spans: OTLP ``ResourceSpans`` messages.
        span_count: how many spans the messages hold in all.
    """

    resource_spans: list[ResourceSpans] = field(default_factory=list)
    span_count: int = 0

    @classmethod
    def merge(cls, batches: list[SpanBatch]) -> SpanBatch:
        """One batch holding the messages of all ``batches``, in order (no copies)."""
        merged = cls()
        for batch in batches:
            merged.resource_spans.extend(batch.resource_spans)
            merged.span_count += batch.span_count
        return merged
