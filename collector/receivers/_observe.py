"""Per-request bookkeeping shared by both transports: the metrics and the debug line.

The debug line carries counts, sizes and the outcome only: never a span's content,
which may hold personal data that the processors have not masked yet.
"""

from __future__ import annotations

import logging
import time

from ..errors import OverloadedError, PermanentError, RetryableError
from ..telemetry import Telemetry

logger = logging.getLogger("tracetables.collector.receivers")


def reason_for(exc: BaseException) -> str:
    """The ``reason`` label of a pipeline error (see ``_status.classify``)."""
    if isinstance(exc, OverloadedError):
        return "overloaded"
    if isinstance(exc, RetryableError):
        return "unavailable"
    if isinstance(exc, PermanentError):
        return "malformed"
    return "internal"


class RequestObserver:
    """Counts and logs the requests of one receiver transport."""

    def __init__(self, receiver: str, transport: str) -> None:
        self.receiver = receiver
        self.transport = transport
        self.telemetry: Telemetry | None = None

    def done(
        self,
        started: float,
        nbytes: int,
        *,
        outcome: str = "ok",
        spans: int = 0,
        refused: int = 0,
        limits_rejected: int = 0,
        store_rejected: int = 0,
    ) -> None:
        """Record one finished request.

        Args:
            started: ``time.perf_counter()`` when the request arrived.
            nbytes: body size as received.
            outcome: ``ok`` or a refusal reason (see ``telemetry.REFUSED_REASONS``).
            spans: spans accepted and stored.
            refused: spans of a refused request (0 when the body could not be decoded).
            limits_rejected: spans dropped by the receiver's span limits (partial success).
            store_rejected: spans the exporter refused (partial success).
        """
        t = self.telemetry
        if t is not None:
            labels = (self.receiver, self.transport)
            if outcome == "ok":
                t.receiver_accepted.labels(*labels).inc(spans)
            else:
                t.receiver_refused_requests.labels(*labels, outcome).inc()
                t.receiver_refused.labels(*labels, outcome).inc(refused)
            if limits_rejected:
                t.rejected_spans.labels("limits").inc(limits_rejected)
            if store_rejected:
                t.rejected_spans.labels("invalid").inc(store_rejected)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "request transport=%s spans=%d rejected=%d bytes=%d outcome=%s latency_ms=%.1f",
                self.transport,
                spans if outcome == "ok" else refused,
                limits_rejected + store_rejected,
                nbytes,
                outcome,
                (time.perf_counter() - started) * 1000,
            )
