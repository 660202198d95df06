"""call(): attempts under one key, a zero-length pending marker per attempt, errors recorded."""

from __future__ import annotations

import json

import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.collector_harness import RunningCollector
from tracetables.instrumentation import call, run


def test_call_retried_lands_as_attempts_with_pending_markers(
    collector: RunningCollector, conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Three attempts of one webhook (refused, 503, 200): numbered 1..3, one key, each with its pending marker."""
    provider = TracerProvider(resource=Resource.create({"service.name": "orders"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.http_url, timeout=10)))
    with run("order", session_id="s-call", user_id="u-1", tracer_provider=provider):
        with pytest.raises(ConnectionRefusedError):
            with call("POST /hook", key="order-9", destination="n8n", request={"order": 9}, tracer_provider=provider):
                raise ConnectionRefusedError()
        with call("POST /hook", key="order-9", destination="n8n", request={"order": 9}, tracer_provider=provider) as c:
            c.response({"error": "busy"}, status_code=503)
        with call("POST /hook", key="order-9", destination="n8n", request={"order": 9}, tracer_provider=provider) as c:
            c.response({"ok": True}, status_code=200)
            c.external_id("exec-77")
    provider.shutdown()
    calls = conn.execute(
        "SELECT encode(span_id, 'hex'), kind, status_code, attributes FROM spans"
        " WHERE attributes->>'flow.role' = 'call' AND NOT (attributes ? 'flow.pending')"
        " ORDER BY (attributes->>'flow.call.attempt')::int"
    ).fetchall()
    assert [r[3]["flow.call.attempt"] for r in calls] == [1, 2, 3]
    assert {r[3]["flow.call.key"] for r in calls} == {"order-9"}
    assert all(r[1] == 3 for r in calls)  # CLIENT
    first, second, third = (r[3] for r in calls)
    assert calls[0][2] == 2 and first["error.type"] == "ConnectionRefusedError"
    assert calls[1][2] == 2 and second["http.response.status_code"] == 503 and second["error.type"] == "503"
    assert calls[2][2] != 2 and third["http.response.status_code"] == 200
    assert third["flow.call.external_id"] == "exec-77" and json.loads(third["flow.call.response"]) == {"ok": True}
    assert (third["server.address"], third["session.id"], third["user.id"]) == ("n8n", "s-call", "u-1")
    markers = conn.execute(
        "SELECT encode(parent_span_id, 'hex'), start_time_unix_nano = end_time_unix_nano, attributes FROM spans"
        " WHERE (attributes->>'flow.pending')::boolean AND attributes->>'flow.role' = 'call'"
    ).fetchall()
    assert sorted(m[0] for m in markers) == sorted(r[0] for r in calls)
    assert all(m[1] for m in markers)  # zero length
    assert sorted(m[2]["flow.call.attempt"] for m in markers) == [1, 2, 3]
    # The projection: one communication_traces row per attempt, the pending rows replaced.
    projected = conn.execute(
        "SELECT encode(span_id, 'hex'), trace_key, attempt_number, overall_status, error_code, http_status_code,"
        " destination_service, request_payload, response_payload, external_execution_id"
        " FROM communication_traces ORDER BY attempt_number"
    ).fetchall()
    assert projected == [
        (calls[0][0], "order-9", 1, "failed", "ConnectionRefusedError", None, "n8n", {"order": 9}, None, None),
        (calls[1][0], "order-9", 2, "failed", "503", 503, "n8n", {"order": 9}, {"error": "busy"}, None),
        (calls[2][0], "order-9", 3, "success", None, 200, "n8n", {"order": 9}, {"ok": True}, "exec-77"),
    ]
