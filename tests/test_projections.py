"""Projections end to end: spans built with the plain OTel SDK (no tracetables code) →
a real collector → PostgreSQL; each role's table checked column by column with SQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer

from tests.collector_harness import RunningCollector

Conn = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture
def tracer(collector: RunningCollector) -> Iterator[Tracer]:
    """A plain SDK tracer exporting each span on its own (so a run's spans come in many requests)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "bot"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True, timeout=10))
    )
    yield provider.get_tracer("tests.projections")
    provider.shutdown()


def hexid(n: int, width: int = 16) -> str:
    return format(n, f"0{width}x")


def rows(conn: Conn, query: str, *params: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query, params).fetchall()  # type: ignore[arg-type]


def test_run_and_steps(tracer: Tracer, conn: Conn) -> None:
    common = {"session.id": "s-1", "user.id": "u-7", "flow.id": "support", "flow.version": "3"}
    with tracer.start_as_current_span(
        "run",
        attributes={
            **common,
            "flow.role": "run",
            "gen_ai.conversation.id": "conv-9",
            "flow.run.request": "where is my order?",
        },
    ) as run:
        with tracer.start_as_current_span(
            "classify",
            attributes={
                **common,
                "flow.role": "step",
                "flow.node.id": "classify",
                "flow.node.type": "condition",
                "flow.step.number": 1,
                "flow.state.before": json.dumps({"intent": None}),
                "flow.state.after": json.dumps({"intent": "order_status"}),
                "flow.node.details": json.dumps(
                    {"conditions": [{"expr": "intent == 'order'", "result": True}], "matched_index": 0}
                ),
                "flow.connection.type": "success",
                "flow.next_node.id": "lookup",
            },
        ) as step1:
            pass
        with tracer.start_as_current_span(
            "lookup",
            record_exception=False,
            set_status_on_exception=False,
            attributes={
                **common,
                "flow.role": "step",
                "flow.node.id": "lookup",
                "flow.node.type": "webhook",
                "flow.step.number": 2,
                "flow.state.before": "not json {",
            },
        ) as step2:
            step2.record_exception(TimeoutError("orders API timed out"))
            step2.set_status(Status(StatusCode.ERROR, "timeout"))
        run.set_attribute("flow.run.response", "Sorry, try again later.")
    trace = hexid(run.get_span_context().trace_id, 32)

    steps = rows(conn, "SELECT *, encode(span_id, 'hex') AS sid FROM flow_execution_steps ORDER BY step_number")
    assert len(steps) == 2
    first, second = steps
    assert first["sid"] == hexid(step1.get_span_context().span_id)
    assert (first["session_id"], first["user_id"], first["flow_id"], first["flow_version"]) == (
        "s-1",
        "u-7",
        "support",
        "3",
    )
    assert (first["node_id"], first["node_type"], first["step_number"], first["status"]) == (
        "classify",
        "condition",
        1,
        "completed",
    )
    assert first["state_before"] == {"intent": None} and first["state_after"] == {"intent": "order_status"}
    assert first["execution_details"]["matched_index"] == 0
    assert (first["connection_type"], first["next_node_id"]) == ("success", "lookup")
    # duration_ms is exact (ns); the timestamps are µs
    assert abs((first["completed_at"] - first["started_at"]) / timedelta(milliseconds=1) - first["duration_ms"]) < 0.002
    assert first["error_message"] is None and first["error_details"] is None
    assert first["parent_span_id"] == run.get_span_context().span_id.to_bytes(8, "big")
    assert (second["node_id"], second["status"]) == ("lookup", "failed")
    assert second["state_before"] == "not json {"  # not JSON: kept as a JSON string
    assert second["error_message"] == "orders API timed out"
    assert second["error_details"]["type"] == "TimeoutError"
    assert second["error_details"]["status_message"] == "timeout"

    (log,) = rows(conn, "SELECT *, encode(trace_id, 'hex') AS tid FROM execution_logs")
    assert log["tid"] == trace
    assert (log["session_id"], log["conversation_id"], log["user_id"], log["flow_id"]) == (
        "s-1",
        "conv-9",
        "u-7",
        "support",
    )
    assert (log["request_message"], log["response_message"]) == ("where is my order?", "Sorry, try again later.")
    assert log["status"] == "partial"  # the run ended well, a step failed
    assert log["failed_nodes"] == ["lookup"]
    assert log["error_summary"] == "lookup: orders API timed out"
    assert log["step_count"] == 2
    assert [(s["node"], s["status"], s["step_number"]) for s in log["execution_trace"]] == [
        ("classify", "completed", 1),
        ("lookup", "failed", 2),
    ]
    assert log["execution_trace"][1]["error"] == "orders API timed out"
    assert log["execution_trace"][0]["execution_time_ms"] == pytest.approx(first["duration_ms"])
    assert log["total_duration_ms"] >= first["duration_ms"] + second["duration_ms"]


def test_failed_run_and_running_marker(tracer: Tracer, conn: Conn) -> None:
    with tracer.start_as_current_span("run", attributes={"flow.role": "run", "session.id": "s-2"}) as run:
        marker = tracer.start_span(
            "run pending",
            attributes={"flow.role": "run", "flow.pending": True, "session.id": "s-2", "flow.run.request": "hi"},
        )
        marker.end()
        (running,) = rows(conn, "SELECT status, run_status, request_message, step_count FROM execution_logs")
        assert running == {"status": "running", "run_status": "running", "request_message": "hi", "step_count": 0}
        with tracer.start_as_current_span("greet", attributes={"flow.role": "step", "flow.node.id": "greet"}):
            pass
        (still,) = rows(conn, "SELECT status, step_count FROM execution_logs")
        assert still == {"status": "running", "step_count": 1}
        run.set_status(Status(StatusCode.ERROR, "model refused"))
    (log,) = rows(
        conn, "SELECT status, run_status, error_summary, failed_nodes, step_count, session_id FROM execution_logs"
    )
    assert log == {
        "status": "failed",
        "run_status": "error",
        "error_summary": "model refused",
        "failed_nodes": [],
        "step_count": 1,
        "session_id": "s-2",
    }


def test_calls_pending_then_final_and_retries(tracer: Tracer, conn: Conn) -> None:
    attempts = []
    with tracer.start_as_current_span("handle", attributes={"flow.id": "orders"}):
        for attempt in (1, 2):
            with tracer.start_as_current_span(
                "POST /hook",
                kind=SpanKind.CLIENT,
                attributes={
                    "flow.role": "call",
                    "flow.call.key": "order-42",
                    "flow.call.attempt": attempt,
                    "flow.id": "orders",
                    "user.id": "u-1",
                    "server.address": "hooks.example.net",
                    "flow.call.request": json.dumps({"order": 42}),
                },
            ) as call:
                marker = tracer.start_span(
                    "POST /hook pending",
                    attributes={
                        "flow.role": "call",
                        "flow.pending": True,
                        "flow.call.key": "order-42",
                        "flow.call.attempt": attempt,
                    },
                )
                marker.end()
                pending = rows(
                    conn,
                    "SELECT overall_status, attempt_number, trace_key FROM communication_traces WHERE span_id = %s",
                    call.get_span_context().span_id.to_bytes(8, "big"),
                )
                assert pending == [{"overall_status": "pending", "attempt_number": attempt, "trace_key": "order-42"}]
                if attempt == 1:
                    call.set_attribute("http.response.status_code", 503)
                    call.set_attribute("error.type", "503")
                    call.set_status(Status(StatusCode.ERROR))
                else:
                    call.set_attribute("http.response.status_code", 200)
                    call.set_attribute("flow.call.response", json.dumps({"ok": True}))
                    call.set_attribute("flow.call.external_id", "n8n-exec-77")
            attempts.append(call)
    got = rows(conn, "SELECT * FROM communication_traces WHERE trace_key = 'order-42' ORDER BY attempt_number")
    assert [(r["attempt_number"], r["overall_status"], r["http_status_code"], r["error_code"]) for r in got] == [
        (1, "failed", 503, "503"),
        (2, "success", 200, None),
    ]
    first, second = got
    assert first["span_id"] == attempts[0].get_span_context().span_id.to_bytes(8, "big")
    assert (second["source_service"], second["destination_service"], second["workflow_id"], second["user_id"]) == (
        "bot",
        "hooks.example.net",
        "orders",
        "u-1",
    )
    assert second["action"] == "POST /hook"
    assert second["request_payload"] == {"order": 42} and second["response_payload"] == {"ok": True}
    assert second["external_execution_id"] == "n8n-exec-77"
    assert second["execution_id"] == hexid(attempts[1].get_span_context().trace_id, 32)
    assert second["responded_at"] > second["requested_at"]


def test_auto_instrumentation_style_http_client_spans(tracer: Tracer, conn: Conn) -> None:
    """Spans shaped like opentelemetry-instrumentation-requests's, old and new conventions."""
    with tracer.start_as_current_span(
        "GET",
        kind=SpanKind.CLIENT,
        attributes={
            "http.method": "GET",
            "http.url": "http://user:pw@api.example.org:8080/v1?q=1",
            "http.status_code": 500,
        },
    ) as old:
        old.set_status(Status(StatusCode.ERROR))
    with tracer.start_as_current_span(
        "GET",
        kind=SpanKind.CLIENT,
        attributes={
            "http.request.method": "GET",
            "url.full": "http://127.0.0.1:9/x",
            "server.address": "127.0.0.1",
            "error.type": "ConnectError",
            "http.request.resend_count": 2,
        },
    ) as refused:
        refused.record_exception(ConnectionRefusedError("[Errno 111] Connection refused"))
        refused.set_status(Status(StatusCode.ERROR, "ConnectError: [Errno 111] Connection refused"))
    with tracer.start_as_current_span("GET /health", kind=SpanKind.SERVER, attributes={"http.request.method": "GET"}):
        pass  # a server span is not a call
    got = rows(conn, "SELECT * FROM communication_traces ORDER BY requested_at")
    assert len(got) == 2
    a, b = got
    assert (
        a["trace_key"],
        a["attempt_number"],
        a["destination_service"],
        a["overall_status"],
        a["error_code"],
        a["http_status_code"],
    ) == (hexid(old.get_span_context().trace_id, 32), 1, "api.example.org", "failed", "500", 500)
    assert (b["attempt_number"], b["destination_service"], b["overall_status"], b["error_code"], b["error_detail"]) == (
        3,
        "127.0.0.1",
        "failed",
        "ConnectError",
        "ConnectError: [Errno 111] Connection refused",
    )


def test_action_chain_with_provenance(tracer: Tracer, conn: Conn) -> None:
    with tracer.start_as_current_span(
        "Web::handle_request",
        attributes={
            "flow.role": "action",
            "flow.action.concept": "app://Web",
            "flow.action.name": "handle_request",
            "flow.action.inputs": json.dumps({"path": "/play/42"}),
        },
    ) as web:
        pass
    with tracer.start_as_current_span(
        "Auth::validate_token",
        links=[Link(web.get_span_context(), {"flow.synchronization": "OnWebRequest"})],
        attributes={
            "flow.role": "action",
            "flow.action.concept": "app://Auth",
            "flow.action.name": "validate_token",
            "flow.action.outputs": json.dumps({"valid": True}),
        },
    ) as auth:
        pass
    with tracer.start_as_current_span(
        "AudioPlayer::play_passage",
        links=[Link(auth.get_span_context(), {"flow.synchronization": "OnAuthSuccess"})],
        attributes={
            "flow.role": "action",
            "flow.action.concept": "app://AudioPlayer",
            "flow.action.name": "play_passage",
            "flow.action.inputs": json.dumps({"passage": 42}),
        },
    ) as play:
        pass
    actions = rows(
        conn,
        "SELECT concept, action_name, inputs, outputs, status, flow_token FROM action_records ORDER BY occurred_at",
    )
    assert [(a["concept"], a["action_name"]) for a in actions] == [
        ("app://Web", "handle_request"),
        ("app://Auth", "validate_token"),
        ("app://AudioPlayer", "play_passage"),
    ]
    assert actions[0]["inputs"] == {"path": "/play/42"} and actions[1]["outputs"] == {"valid": True}
    assert actions[2]["flow_token"] == hexid(play.get_span_context().trace_id, 32)
    assert {a["status"] for a in actions} == {"completed"}
    edges = rows(conn, "SELECT span_id, cause_span_id, synchronization FROM provenance_edges ORDER BY synchronization")
    sid = lambda s: s.get_span_context().span_id.to_bytes(8, "big")  # noqa: E731
    assert edges == [
        {"span_id": sid(play), "cause_span_id": sid(auth), "synchronization": "OnAuthSuccess"},
        {"span_id": sid(auth), "cause_span_id": sid(web), "synchronization": "OnWebRequest"},
    ]
    # The seed's example: why did passage 42 play?
    play_ids = (hexid(play.get_span_context().trace_id, 32), hexid(play.get_span_context().span_id))
    chain = rows(
        conn, "SELECT depth, concept, action, synchronization, span_id FROM tt_causal_chain(%s, %s)", *play_ids
    )
    assert [(c["depth"], c["concept"], c["action"], c["synchronization"]) for c in chain] == [
        (0, "app://AudioPlayer", "play_passage", None),
        (1, "app://Auth", "validate_token", "OnAuthSuccess"),
        (2, "app://Web", "handle_request", "OnWebRequest"),
    ]
    assert chain[2]["span_id"] == hexid(web.get_span_context().span_id)
    produced = rows(conn, "SELECT synchronization, cause_action FROM tt_producing_synchronization(%s, %s)", *play_ids)
    assert produced == [{"synchronization": "OnAuthSuccess", "cause_action": "validate_token"}]
    by_sync = rows(conn, "SELECT action, cause_span_id FROM tt_actions_by_synchronization('OnWebRequest')")
    assert by_sync == [{"action": "validate_token", "cause_span_id": hexid(web.get_span_context().span_id)}]
    assert [a["action_name"] for a in rows(conn, "SELECT * FROM tt_actions(concept_prefix => 'app://Aut')")] == [
        "validate_token"
    ]
    # Three top-level spans: three traces, one action each, linked across traces.
    summary = rows(conn, "SELECT flow_token, action_count, failed_actions FROM action_traces ORDER BY first_action_at")
    assert summary == [{"flow_token": a["flow_token"], "action_count": 1, "failed_actions": 0} for a in actions]
    assert len({a["flow_token"] for a in actions}) == 3


def test_replay_event(tracer: Tracer, conn: Conn) -> None:
    with tracer.start_as_current_span(
        "message_received",
        attributes={
            "flow.role": "event",
            "flow.event.type": "user_message",
            "user.id": "u-3",
            "session.id": "s-3",
            "flow.event.data": json.dumps({"text": "hello"}),
            "flow.context.snapshot": json.dumps({"node": "start"}),
        },
    ) as ev:
        pass
    (row,) = rows(conn, "SELECT * FROM event_traces")
    assert row["span_id"] == ev.get_span_context().span_id.to_bytes(8, "big")
    assert (row["person_id"], row["session_id"], row["event_type"]) == ("u-3", "s-3", "user_message")
    assert row["event_data"] == {"text": "hello"} and row["context_snapshot"] == {"node": "start"}
    assert row["occurred_at"] is not None


def test_plain_spans_feed_no_projection(tracer: Tracer, conn: Conn) -> None:
    with tracer.start_as_current_span("work", attributes={"session.id": "s"}):
        pass
    counts = rows(
        conn,
        "SELECT (SELECT count(*) FROM spans) AS spans, (SELECT count(*) FROM flow_execution_steps)"
        " + (SELECT count(*) FROM execution_logs) + (SELECT count(*) FROM communication_traces)"
        " + (SELECT count(*) FROM action_records) + (SELECT count(*) FROM event_traces) AS projected",
    )
    assert counts == [{"spans": 1, "projected": 0}]
