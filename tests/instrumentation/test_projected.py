"""What the instrumentation emits, read back from the projection tables row by row:
a conversation flow over five node types, a run with a failing step, a chain of three
actions across two processes, and a replay event."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.collector_harness import RunningCollector
from tracetables.instrumentation import action, call, event, handoff, run, step
from tracetables.instrumentation.details import (
    ConditionDetails,
    ConditionResult,
    MessageDetails,
    QuestionDetails,
    ScriptDetails,
    WebhookDetails,
)

Conn = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture
def provider(collector: RunningCollector) -> Iterator[TracerProvider]:
    provider = TracerProvider(resource=Resource.create({"service.name": "bot"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.http_url, timeout=10)))
    yield provider
    provider.shutdown()


def dict_rows(conn: Conn, query: str, *params: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query, params).fetchall()  # type: ignore[arg-type]


def test_conversation_flow_lands_in_steps_and_execution_logs(provider: TracerProvider, conn: Conn) -> None:
    p = provider
    with run(
        "order bot",
        session_id="sess-flow",
        user_id="ada",
        flow_id="orders",
        flow_version="7",
        request="where is order 42?",
        tracer_provider=p,
    ) as r:
        with step("intent", "condition", state_before={"text": "where is order 42?"}, tracer_provider=p) as s:
            s.details(
                ConditionDetails(
                    conditions=[ConditionResult(expression="intent == 'order'", result=True)],
                    matched_index=0,
                    connection_taken="order",
                )
            )
            s.state_after({"text": "where is order 42?", "intent": "order"})
            s.next("ask_number", "order")
        with step("ask_number", "question", tracer_provider=p) as s:
            s.details(QuestionDetails(question_text="Which order?", options=["42", "43"], user_response="42"))
            s.next("lookup", "default")
        with step("lookup", "webhook", tracer_provider=p) as s:
            with call("GET /orders/42", key="orders-42", destination="orders-api", tracer_provider=p) as c:
                c.response({"status": "shipped"}, status_code=200)
            s.details(
                WebhookDetails(
                    url="https://orders.example/42",
                    method="GET",
                    response_status=200,
                    response_body={"status": "shipped"},
                )
            )
            s.next("format", "default")
        with step("format", "script", tracer_provider=p) as s:
            s.details(
                ScriptDetails(
                    language="python",
                    code_preview="status.title()",
                    inputs={"status": "shipped"},
                    outputs={"text": "Shipped"},
                    console_logs=["ok"],
                )
            )
            s.next("reply", "default")
        with step("reply", "message", tracer_provider=p) as s:
            s.details(MessageDetails(template="Order {n}: {status}", rendered_message="Order 42: Shipped"))
        r.response("Order 42: Shipped")

    steps = dict_rows(conn, "SELECT * FROM tt_session_steps('sess-flow')")
    assert [(x["step_number"], x["node_id"], x["node_type"], x["status"]) for x in steps] == [
        (1, "intent", "condition", "completed"),
        (2, "ask_number", "question", "completed"),
        (3, "lookup", "webhook", "completed"),
        (4, "format", "script", "completed"),
        (5, "reply", "message", "completed"),
    ]
    intent, ask, lookup, fmt, reply = steps
    assert intent["state_before"] == {"text": "where is order 42?"}
    assert intent["state_after"] == {"text": "where is order 42?", "intent": "order"}
    assert intent["execution_details"]["conditions"] == [{"expression": "intent == 'order'", "result": True}]
    assert (intent["connection_type"], intent["next_node_id"]) == ("order", "ask_number")
    assert ask["execution_details"]["user_response"] == "42"
    assert lookup["execution_details"]["response_body"] == {"status": "shipped"}
    assert fmt["execution_details"]["console_logs"] == ["ok"]
    assert reply["execution_details"]["rendered_message"] == "Order 42: Shipped"
    assert reply["next_node_id"] is None
    assert {(x["session_id"], x["user_id"], x["flow_id"], x["flow_version"]) for x in steps} == {
        ("sess-flow", "ada", "orders", "7")
    }

    (log,) = dict_rows(conn, "SELECT * FROM tt_user_history('ada')")
    assert (log["status"], log["request_message"], log["response_message"]) == (
        "completed",
        "where is order 42?",
        "Order 42: Shipped",
    )
    assert (log["flow_id"], log["session_id"], log["step_count"], log["failed_nodes"]) == ("orders", "sess-flow", 5, [])
    assert [e["node"] for e in log["execution_trace"]] == ["intent", "ask_number", "lookup", "format", "reply"]
    (webhook,) = dict_rows(conn, "SELECT * FROM tt_trace_chain('orders-42')")
    assert (
        webhook["overall_status"],
        webhook["http_status_code"],
        webhook["destination_service"],
        webhook["response_payload"],
        webhook["user_id"],
        webhook["workflow_id"],
    ) == ("success", 200, "orders-api", {"status": "shipped"}, "ada", "orders")


def test_run_with_a_failing_step_is_partial(provider: TracerProvider, conn: Conn) -> None:
    with run("order bot", session_id="sess-fail", user_id="bo", flow_id="orders", tracer_provider=provider):
        with step("intent", "condition", tracer_provider=provider):
            pass
        try:
            with step("lookup", "webhook", tracer_provider=provider):
                raise TimeoutError("orders API timed out")
        except TimeoutError:
            pass  # the flow handles it and answers anyway
    (log,) = dict_rows(conn, "SELECT * FROM tt_flow_sessions('orders', has_errors => true)")
    assert (log["status"], log["failed_nodes"], log["error_summary"]) == (
        "partial",
        ["lookup"],
        "lookup: orders API timed out",
    )
    assert [(e["node"], e["status"]) for e in log["execution_trace"]] == [("intent", "completed"), ("lookup", "failed")]
    (failed,) = dict_rows(conn, "SELECT * FROM tt_session_errors('sess-fail')")
    assert (failed["node_id"], failed["error_message"], failed["error_details"]["type"]) == (
        "lookup",
        "orders API timed out",
        "TimeoutError",
    )


CHILD = """
import sys
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from tracetables.instrumentation import ActionRef, action

provider = TracerProvider(resource=Resource.create({"service.name": "player"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1], timeout=10)))
cause = ActionRef.from_string(sys.argv[2])
with action("AudioPlayer", "play_passage", inputs={"passage": 42}, caused_by=[(cause, "OnAuthSuccess")],
            tracer_provider=provider) as played:
    print(played.ref.to_string())
provider.shutdown()
"""


def test_action_chain_across_two_processes(provider: TracerProvider, collector: RunningCollector, conn: Conn) -> None:
    with action("Web", "handle_request", inputs={"path": "/play/42"}, tracer_provider=provider) as web:
        pass
    with action("Auth", "validate_token", caused_by=[(web, "OnWebRequest")], tracer_provider=provider) as auth:
        auth.outputs({"valid": True})
    assert auth.ref is not None
    child = subprocess.run(
        [sys.executable, "-c", CHILD, collector.http_url, auth.ref.to_string()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    played = child.stdout.strip()
    trace_hex, span_hex = played.split("-")
    chain = dict_rows(conn, "SELECT * FROM tt_causal_chain(%s, %s)", trace_hex, span_hex)
    assert [(c["depth"], c["concept"], c["action"], c["synchronization"]) for c in chain] == [
        (0, "AudioPlayer", "play_passage", None),
        (1, "Auth", "validate_token", "OnAuthSuccess"),
        (2, "Web", "handle_request", "OnWebRequest"),
    ]
    records = dict_rows(conn, "SELECT concept, inputs, outputs, flow_token FROM action_records ORDER BY occurred_at")
    assert [(a["concept"], a["inputs"], a["outputs"]) for a in records] == [
        ("Web", {"path": "/play/42"}, None),
        ("Auth", None, {"valid": True}),
        ("AudioPlayer", {"passage": 42}, None),
    ]
    assert records[2]["flow_token"] == trace_hex and len({a["flow_token"] for a in records}) == 3


WORKER = """
import sys
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from tracetables.instrumentation import resume, step

provider = TracerProvider(resource=Resource.create({"service.name": "worker"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1], timeout=10)))
with resume(sys.argv[2]):
    for node in ("render", "deliver"):
        with step(node, "message", state_before={"node": node}, tracer_provider=provider):
            pass
provider.shutdown()
"""


def test_a_flow_continued_in_a_worker_process(
    provider: TracerProvider, collector: RunningCollector, conn: Conn
) -> None:
    """A run hands its flow to a queue worker: the worker's steps join the run, numbered on, same session."""
    with run("order", session_id="sess-q", user_id="u-q", flow_id="orders", tracer_provider=provider):
        with step("accept", "action", tracer_provider=provider):
            pass
        with step("enqueue", "action", tracer_provider=provider):
            ref = handoff()
        assert ref is not None and ref.step_number == 2
        subprocess.run(
            [sys.executable, "-c", WORKER, collector.http_url, ref.to_string()],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    steps = dict_rows(
        conn,
        "SELECT v.node_id, v.step_number, v.session_id, v.user_id, v.flow_id, r.run_span_id"
        " FROM flow_execution_steps v JOIN flow_step_rows r USING (trace_id, span_id)"
        " ORDER BY v.step_number",
    )
    assert [(s["node_id"], s["step_number"]) for s in steps] == [
        ("accept", 1),
        ("enqueue", 2),
        ("render", 3),
        ("deliver", 4),
    ]
    assert {(s["session_id"], s["user_id"], s["flow_id"]) for s in steps} == {("sess-q", "u-q", "orders")}
    (run_span,) = {s["run_span_id"] for s in steps}  # one run owns all four
    assert run_span is not None
    (log,) = dict_rows(conn, "SELECT status, execution_trace FROM execution_logs")
    assert log["status"] == "completed"
    assert [t["node"] for t in log["execution_trace"]] == ["accept", "enqueue", "render", "deliver"]


def test_replay_event(provider: TracerProvider, conn: Conn) -> None:
    with run("player", session_id="sess-ev", user_id="person-1", tracer_provider=provider):
        with event("passage_played", data={"passage": 42}, context_snapshot={"volume": 7}, tracer_provider=provider):
            pass
    (row,) = dict_rows(conn, "SELECT * FROM event_traces")
    assert (row["person_id"], row["session_id"], row["event_type"], row["event_data"], row["context_snapshot"]) == (
        "person-1",
        "sess-ev",
        "passage_played",
        {"passage": 42},
        {"volume": 7},
    )
    (spans,) = conn.execute("SELECT count(*) FROM spans WHERE span_id = %s", (row["span_id"],)).fetchone()  # type: ignore[misc]
    assert spans == 1
