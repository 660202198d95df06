"""Round-trip fidelity: any request stored and read back from ``spans`` equals the original."""

from __future__ import annotations

import grpc
import psycopg
from hypothesis import HealthCheck, given, settings
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.collector_harness import RunningCollector
from tests.otlp_strategies import canonical, requests
from tracetables.exporters.postgres.reader import read_request

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=requests())
def test_spans_round_trip_any_request_reads_back_equal(
    request: ExportTraceServiceRequest, collector: RunningCollector, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Every field of every generated span — odd doubles, bytes, nested values, uint64 times — comes back."""
    conn.execute("TRUNCATE spans")
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        export = channel.unary_unary(
            EXPORT,
            request_serializer=ExportTraceServiceRequest.SerializeToString,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        response = export(request, timeout=30)
    assert response.partial_success.rejected_spans == 0, response.partial_success.error_message
    assert canonical(read_request(conn)) == canonical(request)
    mismatched = conn.execute(
        "SELECT count(*) FROM spans"
        " WHERE start_time IS DISTINCT FROM tt_unix_nano_to_timestamptz(start_time_unix_nano)"
        " OR end_time IS DISTINCT FROM tt_unix_nano_to_timestamptz(end_time_unix_nano)"
    ).fetchone()
    assert mismatched == (0,), "start_time/end_time must be the instants the nanosecond columns name"
