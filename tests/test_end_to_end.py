"""End to end: the real OTel SDK exporters → a real collector → PostgreSQL, checked with SQL."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from tests.collector_harness import RunningCollector

ExporterFactory = Callable[[RunningCollector], SpanExporter]

EXPORTERS: dict[str, ExporterFactory] = {
    "grpc": lambda c: GrpcExporter(endpoint=f"127.0.0.1:{c.grpc_port}", insecure=True, timeout=10),
    "grpc-gzip": lambda c: GrpcExporter(
        endpoint=f"127.0.0.1:{c.grpc_port}", insecure=True, timeout=10, compression=grpc.Compression.Gzip
    ),
    "http": lambda c: HttpExporter(endpoint=c.http_url, timeout=10),
    "http-gzip": lambda c: HttpExporter(
        endpoint=c.http_url,
        timeout=10,
        compression=HttpCompression.Gzip,
    ),
}


def _emit(exporter: SpanExporter) -> dict[str, str]:
    """Emit a small trace through the SDK; returns the ids (hex) by span name."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout", "deployment.environment.name": "test"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.e2e", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.26.0")
    ids: dict[str, str] = {}
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes={"http.request.method": "POST"}) as root:
        root_ctx = root.get_span_context()
        with tracer.start_as_current_span(
            "child",
            kind=SpanKind.CLIENT,
            links=[Link(root_ctx, {"flow.synchronization": "OnWebRequest"})],
            attributes={"retries": 3, "ratio": 0.25, "ok": True, "tags": ("a", "b"), "counts": [1, 2]},
        ) as child:
            child.add_event("exception", {"exception.type": "ValueError", "exception.message": "boom"})
            child.set_status(Status(StatusCode.ERROR, "it failed"))
            ids["child"] = format(child.get_span_context().span_id, "016x")
        ids["root"] = format(root_ctx.span_id, "016x")
        ids["trace"] = format(root_ctx.trace_id, "032x")
    provider.shutdown()
    return ids


@pytest.mark.parametrize("transport", sorted(EXPORTERS))
def test_sdk_exporter_spans_land_with_everything_intact(
    transport: str, collector: RunningCollector, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Every span the SDK sends arrives with ids, parent, kind, status, attributes, events, links and resource."""
    ids = _emit(EXPORTERS[transport](collector))
    rows = conn.execute(
        "SELECT encode(span_id, 'hex'), encode(parent_span_id, 'hex'), name, kind, status_code, status_message,"
        " attributes, events, links, resource_attributes, service_name, scope_name, scope_version, scope_schema_url,"
        " start_time <= end_time, end_time_unix_nano >= start_time_unix_nano"
        " FROM spans WHERE trace_id = decode(%s, 'hex') ORDER BY name DESC",
        (ids["trace"],),
    ).fetchall()
    assert [r[2] for r in rows] == ["root", "child"]
    root, child = rows
    assert root[0] == ids["root"] and root[1] is None
    assert root[3] == 2 and root[6] == {"http.request.method": "POST"}
    assert child[0] == ids["child"] and child[1] == ids["root"]
    assert child[3] == 3
    assert (child[4], child[5]) == (2, "it failed")
    assert child[6] == {"retries": 3, "ratio": 0.25, "ok": True, "tags": ["a", "b"], "counts": [1, 2]}
    (event,) = child[7]
    assert event["name"] == "exception"
    assert event["attributes"] == {"exception.type": "ValueError", "exception.message": "boom"}
    assert event["time_unix_nano"] > 0
    (link,) = child[8]
    assert link["trace_id"] == ids["trace"] and link["span_id"] == ids["root"]
    assert link["attributes"] == {"flow.synchronization": "OnWebRequest"}
    assert child[9]["service.name"] == "checkout"
    assert child[9]["deployment.environment.name"] == "test"
    assert child[9]["telemetry.sdk.language"] == "python"
    assert child[10] == "checkout"
    assert (child[11], child[12], child[13]) == ("tests.e2e", "1.2.3", "https://opentelemetry.io/schemas/1.26.0")
    assert child[14] is True and child[15] is True


def test_sdk_exporter_many_spans_all_committed(
    collector: RunningCollector, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """A batch processor's worth of spans over both transports: every one is in the table."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    for factory in (EXPORTERS["grpc"], EXPORTERS["http"]):
        provider = TracerProvider(resource=Resource.create({"service.name": "bulk"}))
        provider.add_span_processor(BatchSpanProcessor(factory(collector), max_export_batch_size=256))
        tracer = provider.get_tracer("bulk")
        for i in range(1000):
            with tracer.start_as_current_span(f"op-{i % 7}", attributes={"i": i}):
                pass
        assert provider.force_flush(30_000)
        provider.shutdown()
    count, distinct = conn.execute("SELECT count(*), count(DISTINCT attributes->>'i') FROM spans").fetchone() or (0, 0)
    assert count == 2000
    assert distinct == 1000
