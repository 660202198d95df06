"""SpanBatch: the one batch type that flows from receivers through processors to exporters.

A batch also carries each ``ResourceSpans``' serialized bytes once someone asked for
them (:meth:`SpanBatch.serialized`): the processors' gates and the exporter's encoder
all read the same bytes, made once. A processor that changes a message in place says so
with :meth:`SpanBatch.changed`, which drops its bytes; the next reader serializes again.

With ``TRACETABLES_CHECK_ENCODED=1`` in the environment (the test suite sets it), every
reuse of cached bytes is checked against a fresh serialization, and the pipeline checks
after each processor: a processor that changes a message without saying so fails with
:class:`StaleEncodingError` instead of letting stale bytes reach a gate or the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

TraceId: TypeAlias = bytes
"""16 bytes, the OTLP trace id."""
SpanId: TypeAlias = bytes
"""8 bytes, the OTLP span id."""

CHECK_ENV = "TRACETABLES_CHECK_ENCODED"
check_encoded: bool = os.environ.get(CHECK_ENV, "") == "1"
"""Whether cached bytes are checked against a fresh serialization (read once, at import)."""


class StaleEncodingError(AssertionError):
    """A ``ResourceSpans`` was changed without :meth:`SpanBatch.changed`: its cached bytes are stale."""


@dataclass(slots=True)
class SpanBatch:
    """Spans in their OTLP protobuf shape, grouped by resource and scope as received.

    The batch owns its messages: a processor may change them in place and return the
    same batch, and nothing upstream looks at them again once handed on. One that
    changes ``resource_spans[i]`` calls ``changed(i)``.

    Attributes:
        resource_spans: OTLP ``ResourceSpans`` messages.
        span_count: how many spans the messages hold in all.
        serializations: how many times a message of this batch was serialized (checks
            not counted); for tests and benchmarks.
    """

    resource_spans: list[ResourceSpans] = field(default_factory=list)
    span_count: int = 0
    serializations: int = field(default=0, init=False, compare=False)
    # id(message) -> (message, its bytes); the message is kept so its id cannot be reused
    _encoded: dict[int, tuple[ResourceSpans, bytes]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def serialized(self, i: int) -> bytes:
        """``resource_spans[i]`` serialized: the cached bytes, or serialized now and cached.

        Raises:
            StaleEncodingError: with the check on, the message no longer matches its bytes.
        """
        rs = self.resource_spans[i]
        hit = self._encoded.get(id(rs))
        if hit is not None and hit[0] is rs:
            if check_encoded and rs.SerializeToString() != hit[1]:
                raise StaleEncodingError(
                    f"resource_spans[{i}] changed without SpanBatch.changed({i}): its cached bytes are stale"
                )
            return hit[1]
        data = rs.SerializeToString()
        self._encoded[id(rs)] = (rs, data)
        self.serializations += 1
        return data

    def changed(self, i: int) -> None:
        """Say that ``resource_spans[i]`` was changed in place: its cached bytes are dropped."""
        self._encoded.pop(id(self.resource_spans[i]), None)

    def verify(self, stage: str) -> None:
        """Check every cached serialization against its message (the check switch's job).

        Raises:
            StaleEncodingError: naming ``stage`` (e.g. ``processor 'pii_masking'``) and the message.
        """
        for i, rs in enumerate(self.resource_spans):
            hit = self._encoded.get(id(rs))
            if hit is not None and hit[0] is rs and rs.SerializeToString() != hit[1]:
                raise StaleEncodingError(
                    f"{stage} changed resource_spans[{i}] without calling SpanBatch.changed({i}): "
                    "its cached bytes are stale"
                )

    def release(self) -> None:
        """Drop every cached serialization (the bytes are no longer needed: encoded)."""
        self._encoded.clear()

    def copy(self) -> SpanBatch:
        """A batch of copies of the messages, with the cached bytes (they are the same)."""
        from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

        dup = SpanBatch([], self.span_count)
        for rs in self.resource_spans:
            twin = ResourceSpans()
            twin.CopyFrom(rs)
            dup.resource_spans.append(twin)
            hit = self._encoded.get(id(rs))
            if hit is not None and hit[0] is rs:
                dup._encoded[id(twin)] = (twin, hit[1])
        return dup

    @classmethod
    def merge(cls, batches: list[SpanBatch]) -> SpanBatch:
        """One batch holding the messages of all ``batches``, in order (no copies).

        Their cached bytes move to it: the merged batch is the one exported, and its
        exporter may :meth:`release` them. A part read again serializes again.
        """
        merged = cls()
        for batch in batches:
            merged.resource_spans.extend(batch.resource_spans)
            merged.span_count += batch.span_count
            merged.serializations += batch.serializations
            merged._encoded.update(batch._encoded)
            batch._encoded = {}
        return merged
