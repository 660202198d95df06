"""Retention: traces past their flow's ``tracing_config.retention_days`` are deleted whole.

Spans are sent with the plain OTel SDK through a real collector, with start times in the
past; ``tt_expire`` (migration 0006) and the exporter's timer are checked with SQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Tracer

from tests.collector_harness import BASE_CONFIG, RunningCollector, start_collector

Conn = psycopg.Connection[tuple[Any, ...]]
DAY_NS = 86_400 * 10**9
TABLES = (
    "spans",
    "flow_step_rows",
    "execution_log_rows",
    "communication_rows",
    "action_rows",
    "provenance_edges",
    "event_rows",
)


def _tracer(collector: RunningCollector) -> tuple[TracerProvider, Tracer]:
    provider = TracerProvider(resource=Resource.create({"service.name": "bot"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True, timeout=10))
    )
    return provider, provider.get_tracer("tests.retention")


@pytest.fixture
def tracer(collector: RunningCollector) -> Iterator[Tracer]:
    provider, tracer = _tracer(collector)
    yield tracer
    provider.shutdown()


def flow_trace(tracer: Tracer, runs: list[tuple[str, float]]) -> bytes:
    """One trace: a root, then per (flow, days ago) a run with a step, a call, two linked actions and an event."""
    now = time.time_ns()
    start = now - int(max(days for _, days in runs) * DAY_NS) - 10**9
    with tracer.start_as_current_span("POST /turn", kind=SpanKind.SERVER, start_time=start) as root:
        for flow, days in runs:
            at = now - int(days * DAY_NS)
            common = {"session.id": "s", "flow.id": flow}
            with tracer.start_as_current_span("run", start_time=at, attributes={**common, "flow.role": "run"}):
                with tracer.start_as_current_span(
                    "step",
                    start_time=at,
                    attributes={**common, "flow.role": "step", "flow.node.id": "n", "flow.step.number": 1},
                ):
                    with tracer.start_as_current_span(
                        "POST /hook",
                        kind=SpanKind.CLIENT,
                        start_time=at,
                        attributes={"flow.role": "call", "flow.call.key": "k", "http.request.method": "POST"},
                    ):
                        pass
                    with tracer.start_as_current_span(
                        "Order::create",
                        start_time=at,
                        attributes={"flow.role": "action", "flow.action.concept": "app://Order"},
                    ) as first:
                        pass
                    with tracer.start_as_current_span(
                        "Ticket::open",
                        start_time=at,
                        attributes={"flow.role": "action", "flow.action.concept": "app://Ticket"},
                        links=[Link(first.get_span_context(), {"flow.synchronization": "OnOrder"})],
                    ):
                        pass
                    with tracer.start_as_current_span(
                        "said",
                        start_time=at,
                        attributes={"flow.role": "event", "flow.event.type": "user_message", "session.id": "s"},
                    ):
                        pass
    return root.get_span_context().trace_id.to_bytes(16, "big")


def counts(conn: Conn, trace_id: bytes) -> dict[str, int]:
    return {
        t: conn.execute(f"SELECT count(*) FROM {t} WHERE trace_id = %s", (trace_id,)).fetchone()[0]  # type: ignore[index]
        for t in TABLES
    }


def test_expired_traces_go_whole_and_nothing_else(tracer: Tracer, conn: Conn) -> None:
    conn.execute("INSERT INTO tracing_config (flow_id, retention_days) VALUES ('support', 7), ('short', 1)")
    old = flow_trace(tracer, [("support", 10)])
    recent = flow_trace(tracer, [("support", 3)])
    unlimited = flow_trace(tracer, [("sales", 400)])  # no row in tracing_config: kept for ever
    mixed = flow_trace(tracer, [("support", 10), ("sales", 10)])  # one run of a flow kept for ever
    both_old = flow_trace(tracer, [("support", 10), ("short", 2)])  # each past its own flow's days
    with tracer.start_as_current_span("plain", start_time=time.time_ns() - 30 * DAY_NS) as plain:
        pass
    plain_id = plain.get_span_context().trace_id.to_bytes(16, "big")
    full = counts(conn, old)
    assert full == {
        "spans": 7,
        "flow_step_rows": 1,
        "execution_log_rows": 1,
        "communication_rows": 1,
        "action_rows": 2,
        "provenance_edges": 1,
        "event_rows": 1,
    }

    assert conn.execute("SELECT tt_expire()").fetchone() == (2,)
    for gone in (old, both_old):
        assert counts(conn, gone) == dict.fromkeys(TABLES, 0)
    assert counts(conn, recent) == full
    assert counts(conn, unlimited) == full
    assert counts(conn, mixed)["execution_log_rows"] == 2
    assert conn.execute("SELECT count(*) FROM spans WHERE trace_id = %s", (plain_id,)).fetchone() == (1,)
    assert conn.execute("SELECT tt_expire()").fetchone() == (0,)

    conn.execute("UPDATE tracing_config SET retention_days = 2 WHERE flow_id = 'support'")
    assert conn.execute("SELECT tt_expire()").fetchone() == (1,)  # now the 3-day-old one too
    assert counts(conn, recent)["spans"] == 0


def test_at_most_max_traces_per_call(tracer: Tracer, conn: Conn) -> None:
    conn.execute("INSERT INTO tracing_config (flow_id, retention_days) VALUES ('support', 7)")
    for _ in range(5):
        flow_trace(tracer, [("support", 8)])
    assert [conn.execute("SELECT tt_expire(2)").fetchone()[0] for _ in range(4)] == [2, 2, 1, 0]  # type: ignore[index]
    assert conn.execute("SELECT count(*) FROM execution_log_rows").fetchone() == (0,)


def test_the_tracing_config_extension_expires_on_its_timer(dsn: str, conn: Conn) -> None:
    """With ``retention.check_interval: 100ms`` an expired trace disappears without anyone asking."""
    config = BASE_CONFIG.replace(
        "service:\n",
        "extensions:\n  tracing_config:\n    retention: {check_interval: 100ms, max_traces_per_transaction: 1}\n"
        "service:\n  extensions: [tracing_config]\n",
    )
    assert "retention" in config
    collector = start_collector(dsn, config)
    provider, tracer = _tracer(collector)
    try:
        old = [flow_trace(tracer, [("support", 10)]) for _ in range(3)]
        kept = flow_trace(tracer, [("support", 1)])
        conn.execute("INSERT INTO tracing_config (flow_id, retention_days) VALUES ('support', 7)")
        deadline = time.monotonic() + 15
        while any(counts(conn, t)["spans"] for t in old) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(counts(conn, t) == dict.fromkeys(TABLES, 0) for t in old)
        assert counts(conn, kept)["spans"] == 7
        assert collector.service.extensions["tracing_config"].retention.expired_traces == 3  # type: ignore[attr-defined]
    finally:
        provider.shutdown()
        collector.stop()
