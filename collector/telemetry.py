"""The collector's own metrics, in Prometheus form, with the OTel Collector's names.

One :class:`Telemetry` per :class:`~.service.Service`, each with its own
``CollectorRegistry``: several collectors in one process (tests) never share counts.
Components reach it through ``Host.telemetry``, never through a module global.
Counters get prometheus-client's ``_total`` suffix, as in the Collector's exposition.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REFUSED_REASONS = ("malformed", "too_large", "unsupported", "overloaded", "unavailable", "internal")
"""The ``reason`` label values of ``otelcol_receiver_refused_spans``."""


class Telemetry:
    """Every metric of one collector.

    Attributes:
        registry: the registry ``/metrics`` renders.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.receiver_accepted = Counter(
            "otelcol_receiver_accepted_spans",
            "Spans the receiver pushed into the pipelines and were stored.",
            ["receiver", "transport"],
            registry=r,
        )
        self.receiver_refused = Counter(
            "otelcol_receiver_refused_spans",
            "Spans of requests the receiver answered with an error.",
            ["receiver", "transport", "reason"],
            registry=r,
        )
        # A malformed or oversized body has no span count: requests are counted too.
        self.receiver_refused_requests = Counter(
            "tracetables_receiver_refused_requests",
            "Requests the receiver answered with an error.",
            ["receiver", "transport", "reason"],
            registry=r,
        )
        self.receiver_open_connections = Gauge(
            "tracetables_receiver_open_connections",
            "Connections open on the receiver's HTTP server.",
            ["receiver", "transport"],
            registry=r,
        )
        self.receiver_closed_connections = Counter(
            "tracetables_receiver_closed_connections",
            "Connections the receiver closed: a deadline passed, or over max_concurrent_connections.",
            ["receiver", "transport", "reason"],
            registry=r,
        )
        self.processor_incoming = Counter(
            "otelcol_processor_incoming_spans", "Spans handed to a processor.", ["processor"], registry=r
        )
        self.processor_outgoing = Counter(
            "otelcol_processor_outgoing_spans", "Spans a processor passed on.", ["processor"], registry=r
        )
        self.exporter_sent = Counter(
            "otelcol_exporter_sent_spans", "Spans the exporter stored.", ["exporter"], registry=r
        )
        self.exporter_failed = Counter(
            "otelcol_exporter_send_failed_spans", "Spans the exporter failed to store.", ["exporter"], registry=r
        )
        self.exporter_queue_size = Gauge(
            "otelcol_exporter_queue_size",
            "Spans accepted and not yet committed (in the batch processor).",
            ["exporter"],
            registry=r,
        )
        self.batch_commit_seconds = Histogram(
            "tracetables_batch_commit_seconds",
            "Time to write and commit one batch, retries included.",
            ["exporter"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.masked_values = Counter(
            "tracetables_masked_values",
            "Values masked by pii_masking, by detector kind (email, phone, card, key, ...).",
            ["processor", "kind"],
            registry=r,
        )
        self.projected_spans = Counter(
            "tracetables_projected_spans",
            "Spans the exporter's projection wrote a row for (inserted or updated), by table.",
            ["exporter", "table"],
            registry=r,
        )
        self.rejected_spans = Counter(
            "tracetables_rejected_spans",
            "Spans refused for good inside an accepted request (partial_success).",
            ["reason"],
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
